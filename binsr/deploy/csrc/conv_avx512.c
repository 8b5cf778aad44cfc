/* AVX-512 VPOPCNTDQ: 8 output pixels per vector, any stride (gathers), masked tails. */
#include "bitkernels.h"

#ifdef BINSR_X86
#define CB_MAX 8 /* output channels per tile */

/* sum_c sign(w[o]) over the taps of outputs ox .. ox+7 that fall into the zero padding (lanes outside m: 0) */
AVX512_ATTR static __m512i padding_correction_avx512(const conv_args *a, int64_t o, int64_t oy, int64_t ox,
                                                     __mmask8 m) {
    const __m512i ix0 = _mm512_add_epi64(_mm512_set1_epi64(ox * a->sw),
                                         _mm512_mullo_epi64(_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7),
                                                            _mm512_set1_epi64(a->sw)));
    const __m512i lo = _mm512_set1_epi64(a->pw), hi = _mm512_set1_epi64(a->Wp - a->pw);
    const int32_t *corr = a->corr + o * a->kh * a->kw;
    __m512i fix = _mm512_setzero_si512();
    for (int64_t kx = 0; kx < a->kw; kx++) {
        __m512i ix = _mm512_add_epi64(ix0, _mm512_set1_epi64(kx));
        __mmask8 outside = _mm512_cmplt_epi64_mask(ix, lo) | _mm512_cmpge_epi64_mask(ix, hi);
        for (int64_t ky = 0; ky < a->kh; ky++) {
            __mmask8 padded = (tap_row_valid(a, oy, ky) ? outside : 0xff) & m;
            fix = _mm512_mask_add_epi64(fix, padded, fix, _mm512_set1_epi64(corr[ky * a->kw + kx]));
        }
    }
    return fix;
}

/* 8 pixels (ox .. ox+rem-1) x CB channels; cb, strided and scaled are compile-time constants */
AVX512_ATTR static inline __attribute__((always_inline)) void tile_avx512(const conv_args *a, int64_t n, int64_t oy,
                                                                         int64_t ox, int64_t rem, int64_t o,
                                                                         const int cb, const int strided,
                                                                         const int scaled, const int one_word) {
    const int64_t Cw = one_word ? 1 : a->Cw, Wp = a->Wp, kh = a->kh, kw = a->kw, wstride = kh * kw * Cw;
    const int64_t sw = strided ? a->sw : 1;
    const __mmask8 m = (__mmask8)((1u << rem) - 1u);
    const __m512i lanes = _mm512_mullo_epi64(_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7), _mm512_set1_epi64(sw));
    const uint64_t *wbase = a->wts + o * wstride;
    __m512i acc[CB_MAX], tap[CB_MAX];
    __m256 facc[CB_MAX], bsum = _mm256_setzero_ps(); /* scaled: sum_taps s (popcount - C/2), sum_taps s */
    UNROLL for (int c = 0; c < cb; c++) { acc[c] = _mm512_setzero_si512(); facc[c] = _mm256_setzero_ps(); }
    for (int64_t ky = 0; ky < kh; ky++) {
        int64_t iy = oy * a->sh + ky;
        const uint64_t *row = a->act + (n * a->Hp + iy) * Cw * Wp + ox * sw;
        for (int64_t kx = 0; kx < kw; kx++) {
            const uint64_t *w = wbase + (ky * kw + kx) * Cw;
            if (scaled) /* counts from -floor(C/2): the small numbers C - 2 popcount has, without a pass */
                UNROLL for (int c = 0; c < cb; c++) tap[c] = _mm512_set1_epi64(-(a->C / 2));
            for (int64_t g = 0; g < Cw; g++) {
                const uint64_t *p = row + g * Wp + kx;
                __m512i av = strided ? _mm512_mask_i64gather_epi64(_mm512_setzero_si512(), m, lanes, p, 8)
                                     : _mm512_maskz_loadu_epi64(m, p);
                UNROLL for (int c = 0; c < cb; c++) {
                    __m512i count = _mm512_popcnt_epi64(_mm512_xor_si512(av, _mm512_set1_epi64((long long)w[c * wstride + g])));
                    if (scaled) tap[c] = _mm512_add_epi64(tap[c], count);
                    else acc[c] = _mm512_add_epi64(acc[c], count);
                }
            }
            if (scaled) {
                const float *sp = a->pscale + (n * a->Hp + iy) * Wp + ox * sw + kx;
                __m256 s = strided ? _mm512_mask_i64gather_ps(_mm256_setzero_ps(), m, lanes, sp, 4)
                                   : _mm256_maskz_loadu_ps(m, sp);
                bsum = _mm256_add_ps(bsum, s);
                UNROLL for (int c = 0; c < cb; c++) facc[c] = _mm256_fmadd_ps(_mm512_cvtepi64_ps(tap[c]), s, facc[c]);
            }
        }
    }
    int border = !scaled && tile_touches_border(a, oy, ox, ox + rem);
    const __m512i k = _mm512_set1_epi64(a->C * kh * kw);
    const __m256 odd = _mm256_mul_ps(_mm256_set1_ps((float)(a->C % 2)), bsum), two = _mm256_set1_ps(2.0f);
    /* locals: the stores below may alias *a as far as the compiler knows, which would reload every field */
    const float *alphas = a->alpha;
    const int64_t plane = a->Hout * a->Wout;
    float *dst = a->out + ((n * a->O + o) * a->Hout + oy) * a->Wout + ox;
    UNROLL for (int c = 0; c < cb; c++) {
        const float alpha = alphas ? alphas[o + c] : 1.0f;
        __m256 v;
        if (scaled) /* alpha sum_taps s (C - 2 popcount) */
            v = _mm256_mul_ps(_mm256_fnmadd_ps(two, facc[c], odd), _mm256_set1_ps(alpha));
        else if (border) { /* K - 2 popcount - the padded taps' sum_c sign(w), in integers */
            __m512i d = _mm512_sub_epi64(k, _mm512_slli_epi64(acc[c], 1));
            d = _mm512_sub_epi64(d, padding_correction_avx512(a, o + c, oy, ox, m));
            v = _mm256_mul_ps(_mm512_cvtepi64_ps(d), _mm256_set1_ps(alpha));
        } else /* alpha (K - 2 popcount): the exact integer, then one rounding */
            v = _mm256_mul_ps(_mm512_cvtepi64_ps(_mm512_sub_epi64(k, _mm512_slli_epi64(acc[c], 1))), _mm256_set1_ps(alpha));
        _mm256_mask_storeu_ps(dst + c * plane, m, v);
    }
}

#define AVX512_ROW(STRIDED, SCALED, ONE)                                                                 \
    for (int64_t ox = x0; ox < x1; ox += 8) {                                                            \
        int64_t rem = x1 - ox < 8 ? x1 - ox : 8;                                                         \
        int64_t o = o0;                                                                                  \
        for (; o + CB_MAX <= o1; o += CB_MAX) tile_avx512(a, n, oy, ox, rem, o, CB_MAX, STRIDED, SCALED, ONE); \
        for (; o < o1; o++) tile_avx512(a, n, oy, ox, rem, o, 1, STRIDED, SCALED, ONE);                  \
    }

/* one instance per (strided, scaled, 64 channels or fewer): the branches fold away inside each */
#define AVX512_VARIANT(NAME, STRIDED, SCALED, ONE)                                                       \
    AVX512_ATTR static void NAME(const conv_args *a, int64_t n, int64_t oy, int64_t x0, int64_t x1, int64_t o0, \
                                 int64_t o1) { AVX512_ROW(STRIDED, SCALED, ONE) }
AVX512_VARIANT(conv_avx512_000, 0, 0, 0)
AVX512_VARIANT(conv_avx512_001, 0, 0, 1)
AVX512_VARIANT(conv_avx512_010, 0, 1, 0)
AVX512_VARIANT(conv_avx512_011, 0, 1, 1)
AVX512_VARIANT(conv_avx512_100, 1, 0, 0)
AVX512_VARIANT(conv_avx512_101, 1, 0, 1)
AVX512_VARIANT(conv_avx512_110, 1, 1, 0)
AVX512_VARIANT(conv_avx512_111, 1, 1, 1)

void conv_avx512(const conv_args *a, int64_t n, int64_t oy, int64_t x0, int64_t x1, int64_t o0, int64_t o1) {
    typedef void (*variant)(const conv_args *, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);
    static const variant table[8] = {conv_avx512_000, conv_avx512_001, conv_avx512_010, conv_avx512_011,
                                     conv_avx512_100, conv_avx512_101, conv_avx512_110, conv_avx512_111};
    table[(a->sw != 1) * 4 + (a->pscale != NULL) * 2 + (a->Cw == 1)](a, n, oy, x0, x1, o0, o1);
}

#endif
