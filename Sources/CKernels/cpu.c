// Whether the AVX-512 kernels may run: the CPU reports F, DQ, BW and VL (CPUID leaf 7) and the
// operating system saves opmask and all 512-bit registers on a context switch (XCR0 bits 1, 2,
// 5, 6, 7), which a hypervisor may withhold even when CPUID lists the instructions. The bf16
// products need AVX512_BF16 on top (CPUID leaf 7, subleaf 1).
#if defined(__x86_64__)
#include <cpuid.h>
#include "ckernels.h"

int ck_avx512_usable(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0;   /* OSXSAVE */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0xE6u) != 0xE6u) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    const unsigned need = (1u << 16) | (1u << 17) | (1u << 30) | (1u << 31);   /* F, DQ, BW, VL */
    return (b & need) == need;
}

int ck_avx512_bf16_usable(void) {
    if (!ck_avx512_usable()) return 0;
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 0;
    return (a >> 5) & 1u;    /* CPUID.(EAX=7,ECX=1):EAX bit 5, AVX512_BF16 */
}
#endif

#if !defined(__x86_64__)
#include "ckernels.h"
int ck_avx512_usable(void) { return 0; }
int ck_avx512_bf16_usable(void) { return 0; }
#endif
