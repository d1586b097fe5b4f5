// Whether the AVX-512 kernels may run: the CPU reports F, DQ, BW and VL (CPUID leaf 7) and the
// operating system saves opmask and all 512-bit registers on a context switch (XCR0 bits 1, 2,
// 5, 6, 7), which a hypervisor may withhold even when CPUID lists the instructions. The bf16
// products need AVX512_BF16 on top (CPUID leaf 7, subleaf 1). Whether 512-bit multiply-adds run
// at half the rate of 256-bit ones picks the tile for 8-wide panels (pointwise_avx512.c).
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

int ck_fma512_split(void) {
    static int cached = -1;    /* every thread computes the same value */
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v >= 0) return v;
    unsigned a, b, c, d;
    v = 0;
    if (ck_avx512_usable() && __get_cpuid(0, &a, &b, &c, &d) && b == 0x68747541u && d == 0x69746E65u &&
        c == 0x444D4163u && __get_cpuid(1, &a, &b, &c, &d)) {    /* "AuthenticAMD" */
        const unsigned base = (a >> 8) & 0xFu;
        v = (base == 0xFu ? base + ((a >> 20) & 0xFFu) : base) == 0x19u;
    }
    __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    return v;
}
#endif

#if !defined(__x86_64__)
#include "ckernels.h"
int ck_avx512_usable(void) { return 0; }
int ck_avx512_bf16_usable(void) { return 0; }
int ck_fma512_split(void) { return 0; }
#endif
