# Sourced by every script that builds distillctl: the speed flags Package.swift cannot declare
# (a package with unsafe flags cannot be depended on by version). A package that depends on this
# one gets SwiftPM's plain release build instead: baseline x86-64 Swift, C at SwiftPM's level.
#   build_flags  - every build of this checkout, tests included (bounds checks and preconditions on)
#   bench_flags  - build_flags plus -Ounchecked, for the benchmarked binary only (its own scratch
#                  path, so switching between the two does not rebuild everything)
# Haswell = AVX2 + FMA: the Swift kernels are written over SIMD8<Float>, which baseline x86-64
# (SSE2) splits into two 4-lane halves (depthwise convolution and the activations 1.5-2.5x
# slower); KERNEL_FMA lets VectorMath use the FMA instruction. Chosen when the building machine
# has both, as the binary is meant for it. The AVX-512 C kernels carry their own target attributes
# and are chosen at run time.
build_flags=(-Xcc -O3)
if [[ "$(uname -m)" == x86_64 ]] && { [[ ! -r /proc/cpuinfo ]] || { grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; }; }; then
    build_flags+=(-Xswiftc -target-cpu -Xswiftc haswell -Xswiftc -DKERNEL_FMA)
fi
bench_flags=("${build_flags[@]}" -Xswiftc -Ounchecked)
bench_scratch=.build-bench
