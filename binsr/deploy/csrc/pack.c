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
/* 8 x 8 bit transposes of the four qwords of v (byte i bit j -> byte j bit i: Hacker's Delight's transpose8) */
AVX2_ATTR static inline __m256i transpose_bits8(__m256i x) {
    __m256i t = _mm256_and_si256(_mm256_xor_si256(x, _mm256_srli_epi64(x, 7)), _mm256_set1_epi64x(0x00AA00AA00AA00AALL));
    x = _mm256_xor_si256(_mm256_xor_si256(x, t), _mm256_slli_epi64(t, 7));
    t = _mm256_and_si256(_mm256_xor_si256(x, _mm256_srli_epi64(x, 14)), _mm256_set1_epi64x(0x0000CCCC0000CCCCLL));
    x = _mm256_xor_si256(_mm256_xor_si256(x, t), _mm256_slli_epi64(t, 14));
    t = _mm256_and_si256(_mm256_xor_si256(x, _mm256_srli_epi64(x, 28)), _mm256_set1_epi64x(0x00000000F0F0F0F0LL));
    return _mm256_xor_si256(_mm256_xor_si256(x, t), _mm256_slli_epi64(t, 28));
}

/* AVX2 sign packing as a bit-matrix transpose: per block of up to 256 pixels each channel's row is one
 * sequential stream, compared 8 pixels at a time into a byte (vmovmskps); per 8 pixels the 64 channels'
 * bytes (8 qwords of 8 channels x 8 pixels) are bit-transposed (shifts and masks on 4 qwords at once) and
 * then byte-transposed (shuffles) into the 8 pixels' words */
AVX2_ATTR static void pack_nchw_row_avx2(const float *x, const float *thr, int64_t C, int64_t HW, int64_t W,
                                         uint64_t *dst, int64_t Wp) {
    enum { BLOCK = 256, GROUPS = BLOCK / 8 };
    uint8_t masks[GROUPS * 64] __attribute__((aligned(32)));
    const __m256i pairs = _mm256_setr_epi8(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15,
                                           0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
    const int64_t Cw = (C + 63) / 64, W8 = W / 8 * 8;
    for (int64_t g = 0; g < Cw; g++) {
        const int64_t cn = C - 64 * g < 64 ? C - 64 * g : 64;
        uint64_t *d = dst + g * Wp;
        for (int64_t x0 = 0; x0 < W8; x0 += BLOCK) {
            const int64_t x1 = x0 + BLOCK < W8 ? x0 + BLOCK : W8, groups = (x1 - x0) / 8;
            if (cn < 64) memset(masks, 0, sizeof masks);
            for (int64_t b = 0; b < cn; b++) {
                const int64_t c = 64 * g + b;
                const float *src = x + c * HW;
                const __m256 t = _mm256_set1_ps(thr ? thr[c] : 0.0f);
                for (int64_t q = 0; q < groups; q++)
                    masks[q * 64 + b] = (uint8_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(src + x0 + 8 * q), t,
                                                                                  _CMP_NGE_UQ));
            }
            for (int64_t q = 0; q < groups; q++) {
                /* qword k = channels 8k .. 8k+7 (byte i: channel 8k+i, bit p: pixel p); after the bit
                 * transpose byte p of qword k holds pixel p's bits of those channels */
                const __m256i a = transpose_bits8(_mm256_load_si256((const __m256i *)(masks + q * 64)));
                const __m256i b = transpose_bits8(_mm256_load_si256((const __m256i *)(masks + q * 64 + 32)));
                /* byte transpose: rows r0..r7 (a: r0-r3, b: r4-r7) -> word p = r0[p] .. r7[p] */
                const __m256i ap = _mm256_shuffle_epi8(a, pairs), bp = _mm256_shuffle_epi8(b, pairs);
                const __m256i lo = _mm256_permute2x128_si256(ap, bp, 0x20), hi = _mm256_permute2x128_si256(ap, bp, 0x31);
                const __m256i z0 = _mm256_unpacklo_epi16(lo, hi), z1 = _mm256_unpackhi_epi16(lo, hi);
                /* z0: lane 0 = pixels 0-3 of r0-r3, lane 1 = pixels 0-3 of r4-r7; z1: pixels 4-7 */
                const __m256i w0 = _mm256_unpacklo_epi32(z0, _mm256_permute2x128_si256(z0, z0, 0x01));
                const __m256i w1 = _mm256_unpackhi_epi32(z0, _mm256_permute2x128_si256(z0, z0, 0x01));
                const __m256i w2 = _mm256_unpacklo_epi32(z1, _mm256_permute2x128_si256(z1, z1, 0x01));
                const __m256i w3 = _mm256_unpackhi_epi32(z1, _mm256_permute2x128_si256(z1, z1, 0x01));
                uint64_t *out = d + x0 + 8 * q;
                _mm_storeu_si128((__m128i *)out, _mm256_castsi256_si128(w0));
                _mm_storeu_si128((__m128i *)(out + 2), _mm256_castsi256_si128(w1));
                _mm_storeu_si128((__m128i *)(out + 4), _mm256_castsi256_si128(w2));
                _mm_storeu_si128((__m128i *)(out + 6), _mm256_castsi256_si128(w3));
            }
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
#define GFNI_ATTR __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi,gfni,avx2,fma,popcnt")))

/* sign-packing as a bit-matrix transpose (AVX-512 VBMI + GFNI: Ice Lake, Zen 4 and later). Per block of up to
 * 256 pixels, each channel's row is read as one sequential stream and compared 16 pixels at a time; the 16-bit
 * masks of 64 channels make a 64 x 16 bit matrix per 16 pixels, transposed to 16 words in registers: a byte
 * gather (vpermt2b) puts each 8 channels x 8 pixels block in a qword, rows reversed, one GF(2) affine
 * transform (vgf2p8affineqb with the identity) transposes all eight blocks, a byte transpose (vpermb) makes
 * the qwords pixels. About 4 instructions per channel and 16 pixels, against 8 for ORing bits into words. */
GFNI_ATTR static void pack_nchw_row_gfni(const float *x, const float *thr, int64_t C, int64_t HW, int64_t W,
                                         uint64_t *dst, int64_t Wp) {
    enum { BLOCK = 256, GROUPS = BLOCK / 16 };
    uint16_t masks[GROUPS * 64] __attribute__((aligned(64)));
    uint8_t gather[2][64], bytes_t[64];
    for (int k = 0; k < 8; k++)
        for (int i = 0; i < 8; i++) {
            gather[0][8 * k + i] = (uint8_t)(2 * (8 * k + 7 - i));     /* low bytes (pixels 0-7), rows reversed */
            gather[1][8 * k + i] = (uint8_t)(2 * (8 * k + 7 - i) + 1); /* high bytes (pixels 8-15) */
            bytes_t[8 * i + k] = (uint8_t)(8 * k + i);                 /* 8 x 8 byte transpose */
        }
    const __m512i g0 = _mm512_loadu_si512(gather[0]), g1 = _mm512_loadu_si512(gather[1]);
    const __m512i bt = _mm512_loadu_si512(bytes_t), identity = _mm512_set1_epi64(0x8040201008040201LL);
    const int64_t Cw = (C + 63) / 64;
    for (int64_t g = 0; g < Cw; g++) {
        const int64_t cn = C - 64 * g < 64 ? C - 64 * g : 64;
        uint64_t *d = dst + g * Wp;
        for (int64_t x0 = 0; x0 < W; x0 += BLOCK) {
            const int64_t x1 = x0 + BLOCK < W ? x0 + BLOCK : W, groups = (x1 - x0 + 15) / 16;
            if (cn < 64) memset(masks, 0, sizeof masks);
            for (int64_t b = 0; b < cn; b++) {
                const int64_t c = 64 * g + b;
                const float *src = x + c * HW;
                const __m512 t = _mm512_set1_ps(thr ? thr[c] : 0.0f);
                for (int64_t q = 0; q < groups; q++) {
                    const int64_t xx = x0 + 16 * q;
                    const __mmask16 m = (__mmask16)(x1 - xx >= 16 ? 0xffffu : (1u << (x1 - xx)) - 1u);
                    masks[q * 64 + b] = (uint16_t)_mm512_mask_cmp_ps_mask(m, _mm512_maskz_loadu_ps(m, src + xx), t,
                                                                          _CMP_NGE_UQ);
                }
            }
            for (int64_t q = 0; q < groups; q++) {
                const int64_t xx = x0 + 16 * q, left = x1 - xx;
                const __m512i lo = _mm512_loadu_si512(masks + q * 64), hi = _mm512_loadu_si512(masks + q * 64 + 32);
                for (int half = 0; half < 2; half++) {
                    const __m512i rows = _mm512_permutex2var_epi8(lo, half ? g1 : g0, hi);
                    const __m512i words = _mm512_permutexvar_epi8(bt, _mm512_gf2p8affine_epi64_epi8(identity, rows, 0));
                    const int64_t n = left - 8 * half;
                    if (n > 0) _mm512_mask_storeu_epi64(d + xx + 8 * half, (__mmask8)(n >= 8 ? 0xff : (1u << n) - 1u), words);
                }
            }
        }
    }
}

AVX512_ATTR static void pack_nchw_row_avx512(const float *x, const float *thr, int64_t C, int64_t HW, int64_t W,
                                             uint64_t *dst, int64_t Wp) {
    /* channel by channel, each ORing its bit into a block of words that stays in L1: every channel's row is
     * one sequential stream (reading all 64 planes' rows at once was 64 streams no prefetcher follows) */
    const int64_t Cw = (C + 63) / 64, block = 256;
    for (int64_t g = 0; g < Cw; g++) {
        const int64_t cn = C - 64 * g < 64 ? C - 64 * g : 64;
        uint64_t *d = dst + g * Wp;
        memset(d, 0, (size_t)W * sizeof(uint64_t));
        for (int64_t x0 = 0; x0 < W; x0 += block) {
            const int64_t x1 = x0 + block < W ? x0 + block : W;
            for (int64_t b = 0; b < cn; b++) {
                const int64_t c = 64 * g + b;
                const float *src = x + c * HW;
                const __m512 t = _mm512_set1_ps(thr ? thr[c] : 0.0f);
                const __m512i bit = _mm512_set1_epi64((long long)(1ull << b));
                for (int64_t xx = x0; xx < x1; xx += 16) {
                    const __mmask16 m = (__mmask16)(x1 - xx >= 16 ? 0xffffu : (1u << (x1 - xx)) - 1u);
                    const __mmask16 neg = _mm512_mask_cmp_ps_mask(m, _mm512_maskz_loadu_ps(m, src + xx), t, _CMP_NGE_UQ);
                    const __mmask8 m0 = (__mmask8)m, m1 = (__mmask8)(m >> 8);
                    __m512i lo = _mm512_maskz_loadu_epi64(m0, d + xx), hi = _mm512_maskz_loadu_epi64(m1, d + xx + 8);
                    lo = _mm512_mask_or_epi64(lo, (__mmask8)neg, lo, bit);
                    hi = _mm512_mask_or_epi64(hi, (__mmask8)(neg >> 8), hi, bit);
                    _mm512_mask_storeu_epi64(d + xx, m0, lo);
                    _mm512_mask_storeu_epi64(d + xx + 8, m1, hi);
                }
            }
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
    if (isa >= ISA_AVX512BW && binsr_has_gfni) { pack_nchw_row_gfni(x, thr, C, HW, W, dst, Wp); return; }
    if (isa >= ISA_AVX512BW) { pack_nchw_row_avx512(x, thr, C, HW, W, dst, Wp); return; }
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
