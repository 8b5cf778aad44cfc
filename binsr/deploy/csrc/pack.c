/* Sign packing of float activations (a bit 1 where x < threshold, NaN included), for every ISA, and the
 * layout changes around it: (P, C) <-> channel-plane transposes and rows split into even/odd columns. */
#include "bitkernels.h"

/* --- portable packing ------------------------------------------------------------------------ */

static void pack_nchw_row_portable(const float *x, const float *thr, int64_t C, int64_t HW, int64_t W,
                                   uint64_t *dst, int64_t Wp) {
    for (int64_t g = 0; g * 64 < C; g++) {
        uint64_t *d = dst + g * Wp;
        memset(d, 0, (size_t)W * sizeof(uint64_t));
        for (int64_t b = 0; b < 64 && 64 * g + b < C; b++) {
            int64_t c = 64 * g + b;
            const float *src = x + c * HW;
            float t = thr ? thr[c] : 0.0f;
            for (int64_t xx = 0; xx < W; xx++) d[xx] |= (uint64_t)!(src[xx] >= t) << b; /* NaN -> -1 */
        }
    }
}


static void pack_rows_portable(const float *x, const float *thr, int64_t C, uint64_t *dst, int64_t stride) {
    for (int64_t g = 0; g * 64 < C; g++) {
        uint64_t word = 0;
        for (int64_t b = 0; b < 64 && 64 * g + b < C; b++) {
            int64_t c = 64 * g + b;
            word |= (uint64_t)!(x[c] >= (thr ? thr[c] : 0.0f)) << b;
        }
        dst[g * stride] = word;
    }
}

#ifdef BINSR_X86
/* 64 channels (one word) of 8 pixels from an NCHW plane set: one compare per channel, its 8 lanes widened
 * to the two 4-word halves; a ragged end goes to the portable loop */
AVX2_ATTR static void pack_nchw_row_avx2(const float *x, const float *thr, int64_t C, int64_t HW, int64_t W,
                                         uint64_t *dst, int64_t Wp) {
    const int64_t Cw = (C + 63) / 64, W8 = W / 8 * 8;
    for (int64_t g = 0; g < Cw; g++) {
        const int64_t cn = C - 64 * g < 64 ? C - 64 * g : 64;
        for (int64_t xx = 0; xx < W8; xx += 8) {
            __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256(), bit = _mm256_set1_epi64x(1);
            for (int64_t b = 0; b < cn; b++) {
                const int64_t c = 64 * g + b;
                /* one stream per channel plane: more than the hardware prefetchers follow; fetch the next line */
                if (!(xx & 15) && xx + 16 < W) _mm_prefetch((const char *)(x + c * HW + xx + 16), _MM_HINT_T0);
                const __m256 v = _mm256_loadu_ps(x + c * HW + xx);
                const __m256i neg = _mm256_castps_si256(_mm256_cmp_ps(v, _mm256_set1_ps(thr ? thr[c] : 0.0f), _CMP_NGE_UQ));
                lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(neg)), bit));
                hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_cvtepi32_epi64(_mm256_extracti128_si256(neg, 1)), bit));
                bit = _mm256_slli_epi64(bit, 1);
            }
            _mm256_storeu_si256((__m256i *)(dst + g * Wp + xx), lo);
            _mm256_storeu_si256((__m256i *)(dst + g * Wp + xx + 4), hi);
        }
    }
    if (W8 < W) pack_nchw_row_portable(x + W8, thr, C, HW, W - W8, dst + W8, Wp);
}

/* one pixel's C values (contiguous) -> Cw words written with stride `stride`: 8 channels per compare */
AVX2_ATTR static void pack_rows_avx2(const float *x, const float *thr, int64_t C, uint64_t *dst, int64_t stride) {
    for (int64_t g = 0; g * 64 < C; g++) {
        uint64_t word = 0;
        for (int q = 0; q < 8; q++) {
            const int64_t c0 = 64 * g + 8 * q;
            if (c0 >= C) break;
            if (C - c0 >= 8) {
                const __m256 v = _mm256_loadu_ps(x + c0), t = thr ? _mm256_loadu_ps(thr + c0) : _mm256_setzero_ps();
                word |= (uint64_t)(unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, t, _CMP_NGE_UQ)) << (8 * q);
            } else
                for (int64_t c = c0; c < C; c++) word |= (uint64_t)!(x[c] >= (thr ? thr[c] : 0.0f)) << (c - 64 * g);
        }
        dst[g * stride] = word;
    }
}

/* 64 channels (one word) of 16 pixels from an NCHW plane set: one compare per channel and vector */
AVX512_ATTR static void pack_nchw_row_avx512(const float *x, const float *thr, int64_t C, int64_t HW, int64_t W,
                                             uint64_t *dst, int64_t Wp) {
    int64_t Cw = (C + 63) / 64;
    for (int64_t g = 0; g < Cw; g++) {
        int64_t cn = C - 64 * g < 64 ? C - 64 * g : 64;
        for (int64_t xx = 0; xx < W; xx += 16) {
            __mmask16 m = (__mmask16)(W - xx >= 16 ? 0xffffu : (1u << (W - xx)) - 1u);
            __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
            for (int64_t b = 0; b < cn; b++) {
                int64_t c = 64 * g + b;
                __m512 v = _mm512_maskz_loadu_ps(m, x + c * HW + xx);
                __mmask16 neg = _mm512_mask_cmp_ps_mask(m, v, _mm512_set1_ps(thr ? thr[c] : 0.0f), _CMP_NGE_UQ);
                __m512i bit = _mm512_set1_epi64((long long)(1ull << b));
                lo = _mm512_mask_or_epi64(lo, (__mmask8)(neg & 0xff), lo, bit);
                hi = _mm512_mask_or_epi64(hi, (__mmask8)(neg >> 8), hi, bit);
            }
            uint64_t *d = dst + g * Wp + xx;
            _mm512_mask_storeu_epi64(d, (__mmask8)(m & 0xff), lo);
            _mm512_mask_storeu_epi64(d + 8, (__mmask8)(m >> 8), hi);
        }
    }
}

/* one pixel's C values (contiguous) -> Cw words written with stride `stride` */
AVX512_ATTR static void pack_rows_avx512(const float *x, const float *thr, int64_t C, uint64_t *dst,
                                         int64_t stride) {
    for (int64_t g = 0; g * 64 < C; g++) {
        uint64_t word = 0;
        for (int q = 0; q < 4; q++) {
            int64_t c0 = 64 * g + 16 * q;
            if (c0 >= C) break;
            __mmask16 m = (__mmask16)(C - c0 >= 16 ? 0xffffu : (1u << (C - c0)) - 1u);
            __m512 v = _mm512_maskz_loadu_ps(m, x + c0);
            __m512 t = thr ? _mm512_maskz_loadu_ps(m, thr + c0) : _mm512_setzero_ps();
            word |= (uint64_t)_mm512_mask_cmp_ps_mask(m, v, t, _CMP_NGE_UQ) << (16 * q);
        }
        dst[g * stride] = word;
    }
}
#endif

void pack_nchw_row(int isa, const float *x, const float *thr, int64_t C, int64_t HW, int64_t W, uint64_t *dst,
                   int64_t Wp) {
#ifdef BINSR_X86
    if (isa == ISA_AVX512) { pack_nchw_row_avx512(x, thr, C, HW, W, dst, Wp); return; }
    if (isa == ISA_AVX2) { pack_nchw_row_avx2(x, thr, C, HW, W, dst, Wp); return; }
#endif
    (void)isa;
    pack_nchw_row_portable(x, thr, C, HW, W, dst, Wp);
}

void run_pack_rows(const float *x, const float *thr, uint64_t *out, int64_t P, int64_t C, int threads) {
    const int isa = binsr_isa_used;
#pragma omp parallel for schedule(dynamic, 64) num_threads(threads)
    for (int64_t p = 0; p < P; p++) {
#ifdef BINSR_X86
        if (isa == ISA_AVX512) { pack_rows_avx512(x + p * C, thr, C, out + p, P); continue; }
        if (isa == ISA_AVX2) { pack_rows_avx2(x + p * C, thr, C, out + p, P); continue; }
#endif
        pack_rows_portable(x + p * C, thr, C, out + p, P);
    }
}


static void transpose_block(const float *src, int64_t rows, int64_t cols, float *dst, int64_t r0, int64_t r1,
                            int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; c++)
        for (int64_t r = r0; r < r1; r++) dst[c * rows + r] = src[r * cols + c];
}

#ifdef BINSR_X86
/* the 8 x 8 floats at src (row stride ss) transposed to dst (row stride ds): unpack, shuffle, lane swap */
AVX2_ATTR static inline void transpose8_avx2(const float *src, int64_t ss, float *dst, int64_t ds) {
    __m256 r[8], t[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + i * ss);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (int i = 0; i < 4; i++) {
        _mm256_storeu_ps(dst + i * ds, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
        _mm256_storeu_ps(dst + (i + 4) * ds, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
    }
}

AVX2_ATTR static void transpose_block_avx2(const float *src, int64_t rows, int64_t cols, float *dst, int64_t r0,
                                           int64_t r1, int64_t c0, int64_t c1) {
    const int64_t r8 = r0 + (r1 - r0) / 8 * 8, c8 = c0 + (c1 - c0) / 8 * 8;
    for (int64_t r = r0; r < r8; r += 8)
        for (int64_t c = c0; c < c8; c += 8) transpose8_avx2(src + r * cols + c, cols, dst + c * rows + r, rows);
    transpose_block(src, rows, cols, dst, r0, r1, c8, c1); /* ragged columns */
    transpose_block(src, rows, cols, dst, r8, r1, c0, c8); /* ragged rows */
}
#endif

/* dst (cols, rows) = src (rows, cols) transposed, in 32 x 32 blocks (8 x 8 register transposes on AVX2) */
void transpose(const float *src, int64_t rows, int64_t cols, float *dst, int threads) {
    const int64_t B = 32, rb = (rows + B - 1) / B, cb = (cols + B - 1) / B;
    const int isa = binsr_isa_used;
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads)
    for (int64_t blk = 0; blk < rb * cb; blk++) {
        const int64_t r0 = blk / cb * B, c0 = blk % cb * B;
        const int64_t r1 = r0 + B < rows ? r0 + B : rows, c1 = c0 + B < cols ? c0 + B : cols;
#ifdef BINSR_X86
        if (isa >= ISA_AVX2) { transpose_block_avx2(src, rows, cols, dst, r0, r1, c0, c1); continue; }
#endif
        transpose_block(src, rows, cols, dst, r0, r1, c0, c1);
    }
}

/* a packed row (Cw runs of Wp words) and its beta row (Wp floats, or NULL) rearranged in place to
 * column(a, ix) order (even columns, then odd): a column stride of 2 becomes contiguous loads; tmp: Wp words */
void split_columns(const conv_args *a, uint64_t *row, float *srow, uint64_t *tmp) {
    const int64_t Wp = a->Wp;
    for (int64_t g = 0; g < a->Cw; g++) {
        memcpy(tmp, row + g * Wp, (size_t)Wp * sizeof(uint64_t));
        for (int64_t ix = 0; ix < Wp; ix++) row[g * Wp + column(a, ix)] = tmp[ix];
    }
    if (!srow) return;
    float *ftmp = (float *)tmp;
    memcpy(ftmp, srow, (size_t)Wp * sizeof(float));
    for (int64_t ix = 0; ix < Wp; ix++) srow[column(a, ix)] = ftmp[ix];
}
