/* Arithmetic limits: what this core's vector units sustain, measured.
 *
 * peak_fp32() runs 8 independent chains of 16-float multiply-adds, peak_binary() 8 chains of
 * XOR + popcount + add on 512 bits (the conv kernels' inner step), each for `iterations` rounds on
 * one thread, and returns the multiply-accumulates per second (binary: 512 one-bit MACs per step).
 * Their ratio is the most a binary conv can gain over an fp32 one on this CPU.
 */
#include <time.h>
#include "bitkernels.h"

static double seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* 8 independent chains of multiply-adds on `width`-float vectors (a generic vector of the ISA's width: a
 * wider one is split, and the compiler lowers a 64-byte one through memory on AVX2) */
#define PEAK_FP32(NAME, ATTR, VT, WIDTH)                                                                 \
    ATTR static double NAME(int64_t iterations) {                                                        \
        VT acc[8], a = {0}, b = {0};                                                                     \
        a += 0.999f;                                                                                     \
        b += 1e-3f;                                                                                      \
        for (int i = 0; i < 8; i++) acc[i] = a * (float)i;                                               \
        const double start = seconds_now();                                                             \
        for (int64_t it = 0; it < iterations; it++)                                                      \
            UNROLL for (int i = 0; i < 8; i++) acc[i] = acc[i] * a + b;                                  \
        const double elapsed = seconds_now() - start;                                                   \
        volatile float sink = 0.0f;                                                                      \
        for (int i = 0; i < 8; i++) sink += acc[i][0];                                                   \
        (void)sink;                                                                                      \
        return 8.0 * (WIDTH) * (double)iterations / elapsed;                                             \
    }

typedef float vf8 __attribute__((vector_size(32)));
typedef float vf16 __attribute__((vector_size(64)));
PEAK_FP32(peak_fp32_portable, , vf8, 8)
#ifdef BINSR_X86
PEAK_FP32(peak_fp32_avx512, AVX512_ATTR, vf16, 16)
PEAK_FP32(peak_fp32_avx2, AVX2_ATTR, vf8, 8)
#endif

/* the fp32 multiply-add of the kernels' instruction set family: AVX-512 (what oneDNN uses on such a CPU) while
 * the kernels run an AVX-512 path, AVX2 below (compare with ONEDNN_MAX_CPU_ISA=AVX2 on an AVX-512 CPU) */
double peak_fp32(int64_t iterations) {
#ifdef BINSR_X86
    if (binsr_isa_used >= ISA_AVX512BW) return peak_fp32_avx512(iterations);
    if (binsr_isa_used >= ISA_AVX2 || binsr_isa_best >= ISA_AVX2) return peak_fp32_avx2(iterations);
#endif
    return peak_fp32_portable(iterations);
}

#ifdef BINSR_X86
AVX512_ATTR static double peak_binary_avx512(int64_t iterations) {
    __m512i x[8], acc[8], w = _mm512_set1_epi64(0x5555555555555555LL);
    for (int i = 0; i < 8; i++) { x[i] = _mm512_set1_epi64(i * 7919); acc[i] = _mm512_setzero_si512(); }
    const double start = seconds_now();
    for (int64_t it = 0; it < iterations; it++)
        UNROLL for (int i = 0; i < 8; i++) {
            x[i] = _mm512_xor_si512(x[i], w);
            acc[i] = _mm512_add_epi64(acc[i], _mm512_popcnt_epi64(x[i]));
        }
    const double elapsed = seconds_now() - start;
    volatile long long sink = 0;
    for (int i = 0; i < 8; i++) sink += _mm512_reduce_add_epi64(acc[i]);
    (void)sink;
    return 8.0 * 512.0 * (double)iterations / elapsed;
}

AVX512BW_ATTR static double peak_binary_avx512bw(int64_t iterations) { /* byte lookups, as conv_avx512bw */
    const __m512i lut = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4));
    const __m512i low = _mm512_set1_epi8(0x0f), w = _mm512_set1_epi64(0x5555555555555555LL);
    __m512i x[8], acc[8];
    for (int i = 0; i < 8; i++) { x[i] = _mm512_set1_epi64(i * 7919); acc[i] = _mm512_setzero_si512(); }
    const double start = seconds_now();
    for (int64_t it = 0; it < iterations; it++)
        UNROLL for (int i = 0; i < 8; i++) {
            x[i] = _mm512_xor_si512(x[i], w);
            const __m512i bytes = _mm512_add_epi8(_mm512_shuffle_epi8(lut, _mm512_and_si512(x[i], low)),
                                                  _mm512_shuffle_epi8(lut, _mm512_and_si512(_mm512_srli_epi16(x[i], 4), low)));
            acc[i] = _mm512_add_epi64(acc[i], _mm512_sad_epu8(bytes, _mm512_setzero_si512()));
        }
    const double elapsed = seconds_now() - start;
    volatile long long sink = 0;
    for (int i = 0; i < 8; i++) sink += _mm512_reduce_add_epi64(acc[i]);
    (void)sink;
    return 8.0 * 512.0 * (double)iterations / elapsed;
}

AVX2_ATTR static double peak_binary_avx2(int64_t iterations) { /* the AVX2 kernel's nibble-lookup popcount */
    __m256i x[4], bytes[4], acc[4], w = _mm256_set1_epi64x(0x5555555555555555LL);
    for (int i = 0; i < 4; i++) {
        x[i] = _mm256_set1_epi64x(i * 7919);
        bytes[i] = acc[i] = _mm256_setzero_si256();
    }
    const double start = seconds_now();
    for (int64_t it = 0; it < iterations; it++) {
        UNROLL for (int i = 0; i < 4; i++) {
            x[i] = _mm256_xor_si256(x[i], w);
            bytes[i] = _mm256_add_epi8(bytes[i], byte_counts(x[i]));
        }
        if ((it & 15) == 15) /* as the kernel flushes byte counts (at most 31 words) */
            UNROLL for (int i = 0; i < 4; i++) {
                acc[i] = _mm256_add_epi64(acc[i], sum_bytes(bytes[i]));
                bytes[i] = _mm256_setzero_si256();
            }
    }
    const double elapsed = seconds_now() - start;
    volatile long long sink = 0;
    for (int i = 0; i < 4; i++) sink += _mm256_extract_epi64(acc[i], 0) + _mm256_extract_epi64(bytes[i], 1);
    (void)sink;
    return 4.0 * 256.0 * (double)iterations / elapsed;
}
#endif

static double peak_binary_scalar(int64_t iterations) {
    uint64_t x[4] = {1, 2, 3, 4}, acc[4] = {0, 0, 0, 0};
    const double start = seconds_now();
    for (int64_t it = 0; it < iterations; it++)
        for (int i = 0; i < 4; i++) {
            x[i] ^= 0x5555555555555555ULL;
            acc[i] += (uint64_t)__builtin_popcountll(x[i]);
        }
    const double elapsed = seconds_now() - start;
    volatile uint64_t sink = acc[0] + acc[1] + acc[2] + acc[3];
    (void)sink;
    return 4.0 * 64.0 * (double)iterations / elapsed;
}

double peak_binary(int64_t iterations) {
#ifdef BINSR_X86
    if (binsr_isa_used == ISA_AVX512) return peak_binary_avx512(iterations);
    if (binsr_isa_used == ISA_AVX512BW) return peak_binary_avx512bw(iterations);
    if (binsr_isa_used == ISA_AVX2) return peak_binary_avx2(iterations);
#endif
    return peak_binary_scalar(iterations);
}
