/* AVX2: 4 output pixels per vector (8 for beta-scaled layers), nibble-lookup popcount (vpshufb + vpsadbw). */
#include "bitkernels.h"

#ifdef BINSR_X86

AVX2_ATTR static inline __m128 low_dwords_to_ps(__m256i v) { /* 4 small int64 -> 4 floats */
    __m256i packed = _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6));
    return _mm_cvtepi32_ps(_mm256_castsi256_si128(packed));
}

/* sum_c sign(w[o]) over the taps of outputs ox .. ox+3 (stride 1) that fall into the zero padding */
AVX2_ATTR static __m256i padding_correction_avx2(const conv_args *a, int64_t o, int64_t oy, int64_t ox) {
    const __m256i ix0 = _mm256_add_epi64(_mm256_set1_epi64x(ox), _mm256_setr_epi64x(0, 1, 2, 3));
    const __m256i lo = _mm256_set1_epi64x(a->pw), hi = _mm256_set1_epi64x(a->Wp - a->pw - 1);
    const int32_t *corr = a->corr + o * a->kh * a->kw;
    __m256i fix = _mm256_setzero_si256();
    for (int64_t kx = 0; kx < a->kw; kx++) {
        __m256i ix = _mm256_add_epi64(ix0, _mm256_set1_epi64x(kx));
        __m256i outside = _mm256_or_si256(_mm256_cmpgt_epi64(lo, ix), _mm256_cmpgt_epi64(ix, hi));
        for (int64_t ky = 0; ky < a->kh; ky++) {
            __m256i padded = tap_row_valid(a, oy, ky) ? outside : _mm256_set1_epi64x(-1);
            fix = _mm256_add_epi64(fix, _mm256_and_si256(padded, _mm256_set1_epi64x(corr[ky * a->kw + kx])));
        }
    }
    return fix;
}

/* 4 pixels (ox .. ox+3) x CB channels (o .. o+CB-1); cb and scaled are compile-time constants */
AVX2_ATTR static inline __attribute__((always_inline)) void tile_avx2(const conv_args *a, int64_t n, int64_t oy,
                                                                     int64_t ox, int64_t o, const int cb,
                                                                     const int scaled, float *dst) {
    const int64_t Cw = a->Cw, Wp = a->Wp, kh = a->kh, kw = a->kw, wstride = kh * kw * Cw;
    const uint64_t *wbase = a->wts + o * wstride;
    __m256i acc[4], bytes[4];
    __m128 facc[4], bsum = _mm_setzero_ps(); /* scaled: sum_taps s (popcount - C/2), sum_taps s */
    const __m256i start = scaled ? _mm256_set1_epi64x(-(a->C / 2)) : _mm256_setzero_si256();
    int pending = 0; /* words summed into `bytes` since the last flush (at most 31: 31 x 8 < 256) */
    UNROLL for (int c = 0; c < cb; c++) {
        acc[c] = start;
        bytes[c] = _mm256_setzero_si256();
        facc[c] = _mm_setzero_ps();
    }
    for (int64_t ky = 0; ky < kh; ky++) {
        int64_t iy = oy + ky;
        const uint64_t *row = act_row(a, n, iy) + ox;
        for (int64_t kx = 0; kx < kw; kx++) {
            const uint64_t *w = wbase + (ky * kw + kx) * Cw;
            for (int64_t g = 0; g < Cw; g++) {
                __m256i av = _mm256_loadu_si256((const __m256i *)(row + g * Wp + kx));
                UNROLL for (int c = 0; c < cb; c++)
                    bytes[c] = _mm256_add_epi8(bytes[c], byte_counts(_mm256_xor_si256(
                                                              av, _mm256_set1_epi64x((long long)w[c * wstride + g]))));
                if (++pending == 31 || scaled) {
                    UNROLL for (int c = 0; c < cb; c++) {
                        acc[c] = _mm256_add_epi64(acc[c], sum_bytes(bytes[c]));
                        bytes[c] = _mm256_setzero_si256();
                    }
                    pending = 0;
                }
            }
            if (scaled) { /* acc holds this tap's popcounts */
                __m128 s = _mm_loadu_ps(scale_row(a, n, iy) + ox + kx);
                bsum = _mm_add_ps(bsum, s);
                UNROLL for (int c = 0; c < cb; c++) {
                    facc[c] = _mm_fmadd_ps(low_dwords_to_ps(acc[c]), s, facc[c]);
                    acc[c] = start;
                }
            }
        }
    }
    int border = !scaled && tile_touches_border(a, oy, ox, ox + 4);
    const __m256i k = _mm256_set1_epi64x(a->C * kh * kw);
    const __m128 odd = _mm_mul_ps(_mm_set1_ps((float)(a->C % 2)), bsum), two = _mm_set1_ps(2.0f);
    /* locals: the stores below may alias *a as far as the compiler knows, which would reload every field */
    const float *alphas = a->alpha;
    UNROLL for (int c = 0; c < cb; c++) {
        __m128 v = _mm_fnmadd_ps(two, facc[c], odd); /* sum_taps s (C - 2 popcount) */
        if (!scaled) {
            __m256i total = _mm256_add_epi64(acc[c], sum_bytes(bytes[c]));
            __m256i d = _mm256_sub_epi64(k, _mm256_slli_epi64(total, 1));
            if (border) d = _mm256_sub_epi64(d, padding_correction_avx2(a, o + c, oy, ox));
            v = low_dwords_to_ps(d);
        }
        if (alphas) v = _mm_mul_ps(v, _mm_set1_ps(alphas[o + c]));
        _mm_storeu_ps(dst + c * CHUNK, v);
    }
}

/* Scaled layers (BiMaCoSR's beta) multiply every tap's count by its own pixel's scale, so the counts cannot
 * wait in bytes across taps. 8 pixels x CB channels: per tap, the byte counts of the tap's Cw (<= 31) words
 * are summed per 4-pixel half (vpsadbw), the two halves merged into 8 int32 lanes (pixels 0,4,1,5,2,6,3,7),
 * converted once and multiply-added with the tap's 8 scales permuted to that order. The numbers are those
 * of tile_avx2 and the AVX-512 tile: sum_taps s (popcount - floor(C/2)) in float, taps in the same order. */
AVX2_ATTR static inline __attribute__((always_inline)) void tile8_scaled_avx2(const conv_args *a, int64_t n,
                                                                             int64_t oy, int64_t ox, int64_t o,
                                                                             const int cb, const int one_word,
                                                                             const int strided, float *dst) {
    const int64_t Cw = one_word ? 1 : a->Cw, Wp = a->Wp, kh = a->kh, kw = a->kw, wstride = kh * kw * Cw;
    const uint64_t *wbase = a->wts + o * wstride;
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7), half = _mm256_set1_epi32((int)(a->C / 2));
    __m256 facc[4], bsum = _mm256_setzero_ps();
    UNROLL for (int c = 0; c < cb; c++) facc[c] = _mm256_setzero_ps();
    for (int64_t ky = 0; ky < kh; ky++) {
        const int64_t iy = oy * a->sh + ky;
        const uint64_t *row = act_row(a, n, iy) + ox;
        const float *srow = scale_row(a, n, iy) + ox;
        for (int64_t kx = 0; kx < kw; kx++) {
            /* column stride 2 (strided): input 2 (ox + j) + kx is stored at column(kx) + ox + j, j = 0..7 */
            const int64_t col = strided ? (kx & 1) * a->Wh + (kx >> 1) : kx;
            const uint64_t *w = wbase + (ky * kw + kx) * Cw;
            const __m256 s = _mm256_permutevar8x32_ps(_mm256_loadu_ps(srow + col), order);
            bsum = _mm256_add_ps(bsum, s);
            /* one channel at a time from counts to its multiply-add (activations reloaded from L1 for each):
             * with every channel's byte counts live at once the compiler spilled them to the stack */
            UNROLL for (int c = 0; c < cb; c++) {
                __m256i c0 = _mm256_setzero_si256(), c1 = _mm256_setzero_si256();
                for (int64_t g = 0; g < Cw; g++) {
                    const __m256i wv = _mm256_set1_epi64x((long long)w[c * wstride + g]);
                    const uint64_t *p = row + g * Wp + col;
                    c0 = _mm256_add_epi8(c0, byte_counts(_mm256_xor_si256(_mm256_loadu_si256((const __m256i *)p), wv)));
                    c1 = _mm256_add_epi8(c1, byte_counts(_mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + 4)), wv)));
                }
                __m256i counts = _mm256_or_si256(sum_bytes(c0), _mm256_slli_epi64(sum_bytes(c1), 32));
                facc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(counts, half)), s, facc[c]);
            }
        }
    }
    const __m256i back = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7); /* lanes back to pixel order */
    const __m256 odd = _mm256_mul_ps(_mm256_set1_ps((float)(a->C % 2)), bsum), two = _mm256_set1_ps(2.0f);
    const float *alphas = a->alpha; /* locals: see tile_avx2 */
    UNROLL for (int c = 0; c < cb; c++) {
        __m256 v = _mm256_permutevar8x32_ps(_mm256_fnmadd_ps(two, facc[c], odd), back);
        if (alphas) v = _mm256_mul_ps(v, _mm256_set1_ps(alphas[o + c]));
        _mm256_storeu_ps(dst + c * CHUNK, v);
    }
}

#define AT(o, ox) (tile + ((o) - o0) * CHUNK + (ox) - x0)

#define AVX2_ROW(SCALED)                                                                                 \
    for (; ox + 4 <= x1; ox += 4) {                                                                      \
        int64_t o = o0;                                                                                  \
        for (; o + 4 <= o1; o += 4) tile_avx2(a, n, oy, ox, o, 4, SCALED, AT(o, ox));                               \
        for (; o < o1; o++) tile_avx2(a, n, oy, ox, o, 1, SCALED, AT(o, ox));                                       \
    }

#define AVX2_ROW8_SCALED(ONE, STRIDED)                                                                   \
    for (; ox + 8 <= x1; ox += 8) {                                                                      \
        int64_t o = o0;                                                                                  \
        for (; o + 4 <= o1; o += 4) tile8_scaled_avx2(a, n, oy, ox, o, 4, ONE, STRIDED, AT(o, ox));                 \
        for (; o < o1; o++) tile8_scaled_avx2(a, n, oy, ox, o, 1, ONE, STRIDED, AT(o, ox));                         \
    }

AVX2_ATTR CONV_ROW(conv_avx2) {
    int64_t ox = x0;
    if (a->sh != 1 || a->sw != 1) {
        if (a->Wh && a->Cw == 1) { AVX2_ROW8_SCALED(1, 1) } /* scaled, column stride 2: see split_columns() */
        else if (a->Wh) { AVX2_ROW8_SCALED(0, 1) }
        conv_popcnt(a, n, oy, ox, x1, o0, o1, AT(o0, ox));
        return;
    }
    if (a->pscale && a->Cw == 1) { AVX2_ROW8_SCALED(1, 0) }
    else if (a->pscale && a->Cw <= 31) { AVX2_ROW8_SCALED(0, 0) } /* byte counts of 31 words fit in a byte */
    if (a->pscale) { AVX2_ROW(1) } else { AVX2_ROW(0) }
    if (ox < x1) conv_popcnt(a, n, oy, ox, x1, o0, o1, AT(o0, ox));
}

#endif
