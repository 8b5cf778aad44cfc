/* AVX-512 tiles (conv_avx512.inc), twice: with VPOPCNTQ, and for AVX-512 CPUs without VPOPCNTDQ (Skylake-SP,
 * Cascade Lake) with byte lookups (vpshufb on 64 bytes) summed per 64-bit lane (vpsadbw). */
#include "bitkernels.h"

#ifdef BINSR_X86

#define ATTR AVX512_ATTR
#define NAME(x) x##_avx512
#define POPCOUNT(v) _mm512_popcnt_epi64(v)
#include "conv_avx512.inc"
#undef ATTR
#undef NAME
#undef POPCOUNT

AVX512BW_ATTR static ALWAYS_INLINE __m512i popcount_bytes_avx512bw(__m512i v) {
    const __m512i lut = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4));
    const __m512i low = _mm512_set1_epi8(0x0f);
    const __m512i bytes = _mm512_add_epi8(_mm512_shuffle_epi8(lut, _mm512_and_si512(v, low)),
                                          _mm512_shuffle_epi8(lut, _mm512_and_si512(_mm512_srli_epi16(v, 4), low)));
    return _mm512_sad_epu8(bytes, _mm512_setzero_si512());
}

#define ATTR AVX512BW_ATTR
#define NAME(x) x##_avx512bw
#define POPCOUNT(v) popcount_bytes_avx512bw(v)
#include "conv_avx512.inc"
#undef ATTR
#undef NAME
#undef POPCOUNT

#endif
