/* Which instruction sets this CPU has (detected once, at import) and which one the kernels use. */
#include "bitkernels.h"

const char *const binsr_isa_names[ISA_COUNT] = {"portable", "popcnt", "avx2", "avx512bw", "avx512-vpopcntdq"};
int binsr_isa_best = ISA_PORTABLE;
int binsr_isa_used = ISA_PORTABLE;
int binsr_has_gfni = 0;

int binsr_isa_supported(int isa) { return isa >= 0 && isa <= binsr_isa_best; }

int binsr_gfni_supported(void) {
#ifdef BINSR_X86
    return binsr_isa_best >= ISA_AVX512BW && __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("gfni");
#else
    return 0;
#endif
}

void binsr_detect_isa(void) {
#ifdef BINSR_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("popcnt")) binsr_isa_best = ISA_POPCNT;
    if (binsr_isa_best == ISA_POPCNT && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        binsr_isa_best = ISA_AVX2;
    if (binsr_isa_best == ISA_AVX2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw"))
        binsr_isa_best = ISA_AVX512BW;
    if (binsr_isa_best == ISA_AVX512BW && __builtin_cpu_supports("avx512vpopcntdq")) binsr_isa_best = ISA_AVX512;
    binsr_has_gfni = binsr_gfni_supported();
#endif
    binsr_isa_used = binsr_isa_best;
}

conv_row_fn conv_row_for(int isa) {
#ifdef BINSR_X86
    if (isa == ISA_AVX512) return conv_avx512;
    if (isa == ISA_AVX512BW) return conv_avx512bw;
    if (isa == ISA_AVX2) return conv_avx2;
    if (isa == ISA_POPCNT) return conv_popcnt;
#endif
    (void)isa;
    return conv_portable;
}
