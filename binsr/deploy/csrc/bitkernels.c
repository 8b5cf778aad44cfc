/*
 * binsr bit kernels: sign-pack activations and XNOR-popcount conv2d / linear on CPUs.
 *
 * Why a C extension: PyTorch has no popcount on packed words, and numba would add a ~50 MB LLVM
 * dependency plus a JIT pause on first use. Plain C99 builds with the compiler a Linux/macOS machine
 * already has, needs no torch headers (so pip's isolated build stays light), and is compiled for
 * baseline x86-64: the fast routines carry __attribute__((target(...))) and one is picked at run time
 * from what the CPU reports (AVX-512 VPOPCNTDQ > AVX2 > POPCNT > portable C), so one build runs
 * everywhere. The build is optional: without a compiler binsr falls back to PyTorch (deploy/kernels.py).
 *
 * Conventions (the Python side, binsr/deploy/kernels.py, owns the tensors):
 *   bit 1 means -1, bit 0 means +1, so sign(0) = +1 as in the simulated layers and an all-zero word
 *   is +1 everywhere (what the zero-padding correction below relies on).
 *   activations: (N, Hp, Cw, Wp) uint64, Hp = H + 2 ph, Wp = W + 2 pw; word g of a pixel holds input
 *     channels 64g .. 64g+63 (bit b = channel 64g+b); padded pixels are all-zero words.
 *   weights:     (O, kh, kw, Cw) uint64, same packing along input channels; unused high bits are 0.
 *   output:      (N, O, Hout, Wout) float32, contiguous.
 *
 * For one output and one tap, the +-1 dot product over C channels is C - 2 popcount(a XOR w).
 * A padded input position is 0 in the float conv, not +-1: without a per-pixel scale the kernels
 * subtract, at border outputs, sum_c sign(w) of every tap that fell into the padding (`corr`); with a
 * per-pixel scale (BiMaCoSR's BMB) the scale of a padded pixel is 0, which removes the tap exactly.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define BINSR_X86 1
#endif

enum { ISA_PORTABLE = 0, ISA_POPCNT = 1, ISA_AVX2 = 2, ISA_AVX512 = 3 };
static const char *ISA_NAMES[] = {"portable", "popcnt", "avx2", "avx512-vpopcntdq"};
static int isa_best = ISA_PORTABLE; /* what the CPU supports */
static int isa_used = ISA_PORTABLE; /* what the kernels use (<= isa_best; lowered for tests) */

typedef struct {
    const uint64_t *act;  /* (N, Hp, Cw, Wp) */
    const uint64_t *wts;  /* (O, kh, kw, Cw) */
    const float *alpha;   /* (O,) or NULL: output scale per channel */
    const float *pscale;  /* (N, Hp, Wp) or NULL: per-input-pixel scale, 0 on padding */
    const int32_t *corr;  /* (O, kh*kw): sum_c sign(w) per tap (used without pscale) */
    float *out;           /* (N, O, Hout, Wout) */
    int64_t N, C, Cw, O, Hp, Wp, Hout, Wout, kh, kw, sh, sw, ph, pw;
    int64_t Wh; /* 0: act and pscale rows in column order; else even columns, then the odd ones from Wh on */
} conv_args;

/* --- shared pieces --------------------------------------------------------------------------- */

static inline int tap_row_valid(const conv_args *a, int64_t oy, int64_t ky) {
    int64_t iy = oy * a->sh + ky;
    return iy >= a->ph && iy < a->Hp - a->ph;
}

static inline int tap_col_valid(const conv_args *a, int64_t ox, int64_t kx) {
    int64_t ix = ox * a->sw + kx;
    return ix >= a->pw && ix < a->Wp - a->pw;
}

static int tile_touches_border(const conv_args *a, int64_t oy, int64_t ox0, int64_t ox1) {
    if (!tap_row_valid(a, oy, 0) || !tap_row_valid(a, oy, a->kh - 1)) return 1;
    return !tap_col_valid(a, ox0, 0) || !tap_col_valid(a, ox1 - 1, a->kw - 1);
}

/* where padded column ix of an act or pscale row is stored */
static inline int64_t column(const conv_args *a, int64_t ix) { return a->Wh ? (ix & 1) * a->Wh + (ix >> 1) : ix; }

static inline void store(const conv_args *a, int64_t n, int64_t o, int64_t oy, int64_t ox, float v) {
    a->out[((n * a->O + o) * a->Hout + oy) * a->Wout + ox] = a->alpha ? v * a->alpha[o] : v;
}

/* --- portable path: one output at a time, padded taps skipped (exact by construction) ---------- */

#define DEFINE_PORTABLE(NAME, ATTR)                                                                      \
    ATTR static void NAME(const conv_args *a, int64_t n, int64_t oy, int64_t x0, int64_t x1, int64_t o0,  \
                          int64_t o1) {                                                                  \
        for (int64_t o = o0; o < o1; o++)                                                                \
            for (int64_t ox = x0; ox < x1; ox++) {                                                       \
                int64_t dot = 0;                                                                         \
                float acc = 0.0f;                                                                        \
                for (int64_t ky = 0; ky < a->kh; ky++) {                                                 \
                    if (!tap_row_valid(a, oy, ky)) continue;                                             \
                    int64_t iy = oy * a->sh + ky;                                                        \
                    const uint64_t *row = a->act + (n * a->Hp + iy) * a->Cw * a->Wp;                      \
                    for (int64_t kx = 0; kx < a->kw; kx++) {                                             \
                        if (!tap_col_valid(a, ox, kx)) continue;                                         \
                        int64_t ix = column(a, ox * a->sw + kx);                                         \
                        const uint64_t *w = a->wts + ((o * a->kh + ky) * a->kw + kx) * a->Cw;             \
                        int64_t pop = 0;                                                                 \
                        for (int64_t g = 0; g < a->Cw; g++)                                              \
                            pop += __builtin_popcountll(row[g * a->Wp + ix] ^ w[g]);                     \
                        int64_t d = a->C - 2 * pop;                                                      \
                        if (a->pscale)                                                                   \
                            acc += a->pscale[(n * a->Hp + iy) * a->Wp + ix] * (float)d;                  \
                        else                                                                             \
                            dot += d;                                                                    \
                    }                                                                                    \
                }                                                                                        \
                store(a, n, o, oy, ox, a->pscale ? acc : (float)dot);                                    \
            }                                                                                            \
    }

DEFINE_PORTABLE(conv_portable, )
#ifdef BINSR_X86
DEFINE_PORTABLE(conv_popcnt, __attribute__((target("popcnt"))))

/* --- AVX2: 4 output pixels per vector (8 for beta-scaled layers; stride 1), nibble-lookup popcount -- */

#define AVX2_ATTR __attribute__((target("avx2,fma,popcnt")))
#define CB_MAX 8 /* output channels per AVX-512 tile */
#define UNROLL _Pragma("GCC unroll 8")

/* per-byte popcounts of v (each byte 0..8): summed with vpaddb for up to 31 words before vpsadbw */
AVX2_ATTR static inline __m256i byte_counts(__m256i v) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    __m256i lo = _mm256_and_si256(v, low);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
    return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

AVX2_ATTR static inline __m256i sum_bytes(__m256i bytes) { /* 4 x 64-bit sums of 8 bytes */
    return _mm256_sad_epu8(bytes, _mm256_setzero_si256());
}

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
                                                                     const int scaled) {
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
        const uint64_t *row = a->act + (n * a->Hp + iy) * Cw * Wp + ox;
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
                __m128 s = _mm_loadu_ps(a->pscale + (n * a->Hp + iy) * Wp + ox + kx);
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
    const int64_t plane = a->Hout * a->Wout;
    float *dst = a->out + ((n * a->O + o) * a->Hout + oy) * a->Wout + ox;
    UNROLL for (int c = 0; c < cb; c++) {
        __m128 v = _mm_fnmadd_ps(two, facc[c], odd); /* sum_taps s (C - 2 popcount) */
        if (!scaled) {
            __m256i total = _mm256_add_epi64(acc[c], sum_bytes(bytes[c]));
            __m256i d = _mm256_sub_epi64(k, _mm256_slli_epi64(total, 1));
            if (border) d = _mm256_sub_epi64(d, padding_correction_avx2(a, o + c, oy, ox));
            v = low_dwords_to_ps(d);
        }
        if (alphas) v = _mm_mul_ps(v, _mm_set1_ps(alphas[o + c]));
        _mm_storeu_ps(dst + c * plane, v);
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
                                                                             const int strided) {
    const int64_t Cw = one_word ? 1 : a->Cw, Wp = a->Wp, kh = a->kh, kw = a->kw, wstride = kh * kw * Cw;
    const uint64_t *wbase = a->wts + o * wstride;
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7), half = _mm256_set1_epi32((int)(a->C / 2));
    __m256 facc[4], bsum = _mm256_setzero_ps();
    UNROLL for (int c = 0; c < cb; c++) facc[c] = _mm256_setzero_ps();
    for (int64_t ky = 0; ky < kh; ky++) {
        const int64_t iy = oy * a->sh + ky;
        const uint64_t *row = a->act + (n * a->Hp + iy) * Cw * Wp + ox;
        const float *srow = a->pscale + (n * a->Hp + iy) * Wp + ox;
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
    const int64_t plane = a->Hout * a->Wout;
    float *dst = a->out + ((n * a->O + o) * a->Hout + oy) * a->Wout + ox;
    UNROLL for (int c = 0; c < cb; c++) {
        __m256 v = _mm256_permutevar8x32_ps(_mm256_fnmadd_ps(two, facc[c], odd), back);
        if (alphas) v = _mm256_mul_ps(v, _mm256_set1_ps(alphas[o + c]));
        _mm256_storeu_ps(dst + c * plane, v);
    }
}

#define AVX2_ROW(SCALED)                                                                                 \
    for (; ox + 4 <= x1; ox += 4) {                                                                      \
        int64_t o = o0;                                                                                  \
        for (; o + 4 <= o1; o += 4) tile_avx2(a, n, oy, ox, o, 4, SCALED);                               \
        for (; o < o1; o++) tile_avx2(a, n, oy, ox, o, 1, SCALED);                                       \
    }

#define AVX2_ROW8_SCALED(ONE, STRIDED)                                                                   \
    for (; ox + 8 <= x1; ox += 8) {                                                                      \
        int64_t o = o0;                                                                                  \
        for (; o + 4 <= o1; o += 4) tile8_scaled_avx2(a, n, oy, ox, o, 4, ONE, STRIDED);                 \
        for (; o < o1; o++) tile8_scaled_avx2(a, n, oy, ox, o, 1, ONE, STRIDED);                         \
    }

AVX2_ATTR static void conv_avx2(const conv_args *a, int64_t n, int64_t oy, int64_t x0, int64_t x1, int64_t o0,
                                int64_t o1) {
    int64_t ox = x0;
    if (a->sh != 1 || a->sw != 1) {
        if (a->Wh && a->Cw == 1) { AVX2_ROW8_SCALED(1, 1) } /* scaled, column stride 2: see split_columns() */
        else if (a->Wh) { AVX2_ROW8_SCALED(0, 1) }
        conv_popcnt(a, n, oy, ox, x1, o0, o1);
        return;
    }
    if (a->pscale && a->Cw == 1) { AVX2_ROW8_SCALED(1, 0) }
    else if (a->pscale && a->Cw <= 31) { AVX2_ROW8_SCALED(0, 0) } /* byte counts of 31 words fit in a byte */
    if (a->pscale) { AVX2_ROW(1) } else { AVX2_ROW(0) }
    if (ox < x1) conv_popcnt(a, n, oy, ox, x1, o0, o1);
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

/* --- AVX-512 VPOPCNTDQ: 8 output pixels per vector, any stride (gathers), masked tails ------------ */

#define AVX512_ATTR __attribute__((target("avx512f,avx512dq,avx512vl,avx512vpopcntdq,avx2,fma")))

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
    const float K = (float)(a->C * kh * kw); /* exact: fewer than 2^24 */
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
        } else /* alpha (K - 2 popcount) in one multiply-add (exact integers without alpha) */
            v = _mm256_fmadd_ps(_mm512_cvtepi64_ps(acc[c]), _mm256_set1_ps(-2.0f * alpha), _mm256_set1_ps(K * alpha));
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

static void conv_avx512(const conv_args *a, int64_t n, int64_t oy, int64_t x0, int64_t x1, int64_t o0, int64_t o1) {
    typedef void (*variant)(const conv_args *, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);
    static const variant table[8] = {conv_avx512_000, conv_avx512_001, conv_avx512_010, conv_avx512_011,
                                     conv_avx512_100, conv_avx512_101, conv_avx512_110, conv_avx512_111};
    table[(a->sw != 1) * 4 + (a->pscale != NULL) * 2 + (a->Cw == 1)](a, n, oy, x0, x1, o0, o1);
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
#endif /* BINSR_X86 */

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
#endif

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

/* --- fused layers: one call per binary layer --------------------------------------------------
 *
 * run_fused() computes a whole packed layer in two parallel passes over the activations:
 *   1. per input row: sign-pack h (the input after the layer's pre-bias) against the threshold,
 *      BiMaCoSR's per-pixel scale beta = mean_c |h|, and the low-rank branch's down-projections
 *      low[r] = sum_c D[r,c] x[c];
 *   2. per output tile: the XNOR-popcount conv above (alpha, beta), then, while the tile is in L1,
 *      + bias, RPReLU/TaA of the sample's timestep group, + the identity residual, + the low-rank
 *      up-projection sum_r U[o,r] low[r], + the sparse branch as a gather over its sorted (o, c)
 *      entries, in the order the simulated layer adds them.
 * Layout 0 is a conv, (N, C, H, W) -> (N, O, Hout, Wout). Layout 1 is a linear on P tokens,
 * (P, C) -> (P, O): transposed to a (1, C, 1, P) image, run as a 1 x 1 conv, transposed back.
 * The float loops are plain C compiled for several instruction sets (target_clones).
 */

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi" /* vector helpers are always inlined into each clone: no ABI crosses */
#endif
#if defined(BINSR_X86) && defined(__linux__)
#define FLOAT_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FLOAT_CLONES
#endif

#define CHUNK 64 /* output pixels per work item of pass 2 (a row piece: the epilogue's count <= 64) */

typedef struct {
    const float *x;                  /* the layer input, layout 0: (N, C, H, W); layout 1: (P, C) */
    const float *h;                  /* what is sign-packed (x after the layer's pre-bias), shaped as x */
    int64_t layout, N, C, H, W;      /* layout 1: N = H = 1, W = P */
    const float *thr;                /* (C,) or NULL */
    int64_t pixel_scale;             /* 1: beta = mean_c |h| per pixel */
    const float *bias;               /* (O,) or NULL */
    const float *act_shift, *act_slope, *act_bias; /* (act_rows, O) or NULL: RPReLU per sample (token) block */
    int64_t act_rows;
    int64_t residual;                /* 1: + x (same shape as the output) */
    const float *down, *up;          /* LRMB: (rank, C), (O, rank), or NULL */
    int64_t rank;
    const int32_t *sp_ptr, *sp_col;  /* SMB: CSR rows (O + 1,), input channels (k,) */
    const float *sp_val;
    float *out;                      /* layout 0: (N, O, Hout, Wout); layout 1: (P, O) */
    float *low;                      /* scratch (N, rank, Hout, Wout) */
    float *xs;                       /* scratch (N, C, Hout, Wout): x at the pixels a strided layer's 1x1 branches read */
    float *near;                     /* scratch (threads, C + rank, CHUNK): each thread's copy of one chunk's inputs */
    int threads;
    int64_t O;                       /* output channels (as conv_args.O) */
} fused_args;

/* 8 floats: GCC/clang vector extensions, compiled for each FLOAT_CLONES target (ymm, 2 xmm, ...) */
typedef float vf8 __attribute__((vector_size(32)));
typedef int32_t vi8 __attribute__((vector_size(32)));

/* n <= 8 values p[0], p[step], ...; lanes past n are 0 */
static inline __attribute__((always_inline)) vf8 load8(const float *p, int64_t step, int64_t n) {
    vf8 v = {0};
    if (n == 8 && step == 1) memcpy(&v, p, sizeof v);
    else for (int64_t k = 0; k < n; k++) v[k] = p[k * step];
    return v;
}

static inline __attribute__((always_inline)) void store8(float *p, int64_t step, int64_t n, vf8 v) {
    if (n == 8 && step == 1) memcpy(p, &v, sizeof v);
    else for (int64_t k = 0; k < n; k++) p[k * step] = v[k];
}

#define UNROLL4 _Pragma("GCC unroll 4")

/* beta and low-rank projections of one block of pixels: NV vectors of 8 (a constant after inlining;
 * then every load is one plain vector load), or, with NV = 0, the n (< 32) pixels of a ragged end */
static inline __attribute__((always_inline)) void beta_low_block(const float *x, const float *h, int64_t C,
                                                                int64_t plane, float *beta, const float *down,
                                                                int64_t rank, float *low, int64_t low_plane,
                                                                const int NV, int64_t count) {
    const vf8 zero = {0};
    const vi8 magnitude = (vi8){0} + 0x7fffffff; /* clears the sign bit: |v| */
    const int nv = NV ? NV : (int)((count + 7) / 8);
    int64_t n[4];
    UNROLL4 for (int q = 0; q < 4; q++) n[q] = NV ? 8 : (count - 8 * q < 0 ? 0 : (count - 8 * q > 8 ? 8 : count - 8 * q));
    if (beta) {
        vf8 acc[4] = {zero, zero, zero, zero};
        for (int64_t c = 0; c < C; c++)
            UNROLL4 for (int q = 0; q < nv; q++) acc[q] += (vf8)((vi8)load8(h + c * plane + 8 * q, 1, n[q]) & magnitude);
        UNROLL4 for (int q = 0; q < nv; q++) store8(beta + 8 * q, 1, n[q], acc[q] / (float)C);
    }
    for (int64_t r0 = 0; r0 < rank; r0 += 4) {
        const int64_t nr = rank - r0 < 4 ? rank - r0 : 4;
        vf8 acc[4][4];
        UNROLL4 for (int r = 0; r < 4; r++) UNROLL4 for (int q = 0; q < 4; q++) acc[r][q] = zero;
        for (int64_t c = 0; c < C; c++) {
            vf8 xv[4] = {zero, zero, zero, zero}; /* (only the first nv are used) */
            UNROLL4 for (int q = 0; q < nv; q++) xv[q] = load8(x + c * plane + 8 * q, 1, n[q]);
            UNROLL4 for (int r = 0; r < 4; r++) {
                const float d = r < nr ? down[(r0 + r) * C + c] : 0.0f;
                UNROLL4 for (int q = 0; q < nv; q++) acc[r][q] += d * xv[q];
            }
        }
        for (int r = 0; r < nr; r++)
            UNROLL4 for (int q = 0; q < nv; q++) store8(low + (r0 + r) * low_plane + 8 * q, 1, n[q], acc[r][q]);
    }
}

/* beta[i] = mean_c |h[c, i]| and low[r, i] = sum_c D[r, c] x[c, i] for one row of W pixels (beta or low
 * may be NULL): 32 pixels x 4 ranks of accumulators, so each value loaded feeds 4 multiply-adds */
FLOAT_CLONES static void beta_low_row(const float *x, const float *h, int64_t C, int64_t plane, int64_t W,
                                      float *beta, const float *down, int64_t rank, float *low, int64_t low_plane) {
    for (int64_t i0 = 0; i0 < W;) {
        float *b = beta ? beta + i0 : NULL, *l = low ? low + i0 : NULL;
        const int64_t left = W - i0, r = low ? rank : 0;
        if (left >= 32) beta_low_block(x + i0, h + i0, C, plane, b, down, r, l, low_plane, 4, 32), i0 += 32;
        else if (left >= 16) beta_low_block(x + i0, h + i0, C, plane, b, down, r, l, low_plane, 2, 16), i0 += 16;
        else if (left >= 8) beta_low_block(x + i0, h + i0, C, plane, b, down, r, l, low_plane, 1, 8), i0 += 8;
        else beta_low_block(x + i0, h + i0, C, plane, b, down, r, l, low_plane, 0, left), i0 = W;
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
static void transpose(const float *src, int64_t rows, int64_t cols, float *dst, int threads) {
    const int64_t B = 32, rb = (rows + B - 1) / B, cb = (cols + B - 1) / B;
    const int isa = isa_used;
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
static void split_columns(const conv_args *a, uint64_t *row, float *srow, uint64_t *tmp) {
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

/* pass 1: one padded row of packed words and beta per (n, yp); on rows the output samples (every sh-th),
 * the low-rank projections and, for strided layers, x at the sampled pixels (xs: (N, C, Hout, Wout)),
 * so that pass 2 reads both contiguously. With a->Wh, rows are stored in column() order (split: Wp words
 * of scratch per thread) */
static void fused_prepare(const fused_args *f, const conv_args *a, uint64_t *act, float *pscale, float *xs,
                          uint64_t *split) {
    const int64_t N = f->N, C = f->C, H = f->H, W = f->W, Cw = a->Cw, Hp = a->Hp, Wp = a->Wp;
    const int64_t ph = a->ph, pw = a->pw, sh = a->sh, sw = a->sw, Ho = a->Hout, Wo = a->Wout;
    const int strided = sh != 1 || sw != 1;
    const int isa = isa_used;
    /* dynamic: where another process (a browser, a neighbour VM) takes part of one core, the other thread
     * takes more rows instead of waiting for it at the end */
#pragma omp parallel for schedule(dynamic, 1) num_threads(f->threads)
    for (int64_t r = 0; r < N * Hp; r++) {
        int64_t n = r / Hp, yp = r % Hp;
        uint64_t *row = act + r * Cw * Wp;
        float *srow = pscale ? pscale + r * Wp : NULL;
        memset(row, 0, (size_t)(Cw * Wp) * sizeof(uint64_t));
        if (srow) memset(srow, 0, (size_t)Wp * sizeof(float));
        if (yp < ph || yp >= H + ph) continue;
        const int64_t y = yp - ph, offset = n * C * H * W + y * W;
        const float *src = f->h + offset;
#ifdef BINSR_X86
        if (isa == ISA_AVX512) pack_nchw_row_avx512(src, f->thr, C, H * W, W, row + pw, Wp);
        else if (isa == ISA_AVX2) pack_nchw_row_avx2(src, f->thr, C, H * W, W, row + pw, Wp);
        else
#endif
            pack_nchw_row_portable(src, f->thr, C, H * W, W, row + pw, Wp);
        const int sampled = y % sh == 0 && y / sh < Ho; /* the 1x1 branches read this row */
        if (!strided) {
            beta_low_row(f->x + offset, src, C, H * W, W, srow ? srow + pw : NULL, f->down, f->rank,
                         f->rank ? f->low + n * f->rank * H * W + y * W : NULL, H * W);
            continue;
        }
        if (srow) beta_low_row(NULL, src, C, H * W, W, srow + pw, NULL, 0, NULL, 0);
        if (a->Wh) {
#ifdef _OPENMP
            split_columns(a, row, srow, split + omp_get_thread_num() * Wp);
#else
            split_columns(a, row, srow, split);
#endif
        }
        if (!sampled || !xs) continue;
        const int64_t oy = y / sh, plane = Ho * Wo;
        float *dst = xs + n * C * plane + oy * Wo;
        for (int64_t c = 0; c < C; c++)
            for (int64_t ox = 0; ox < Wo; ox++) dst[c * plane + ox] = f->x[offset + c * H * W + ox * sw];
        if (f->rank) beta_low_row(dst, dst, C, plane, Wo, NULL, f->down, f->rank, f->low + n * f->rank * plane + oy * Wo,
                                  plane);
    }
}

/* pass 2 epilogue on `count` (<= 64) contiguous outputs of one tile row (channel o), all with activation
 * row g. NV vectors of 8 (a constant after inlining: plain vector loads), or NV = 0 for a ragged count.
 * Eight vectors of accumulators keep the rank and sparse sums independent chains. */
static inline __attribute__((always_inline)) void epilogue_body(const fused_args *f, float *row, const float *res,
                                                               const float *low, const float *src, int64_t plane,
                                                               int64_t o, int64_t g, const int NV, int64_t count) {
    const int64_t O = f->O, rank = f->rank;
    const vf8 zero = {0};
    const float b = f->bias ? f->bias[o] : 0.0f;
    const int act = f->act_shift != NULL;
    const float sh = act ? f->act_shift[g * O + o] : 0.0f, sl = act ? f->act_slope[g * O + o] : 1.0f,
                ab = act ? f->act_bias[g * O + o] : 0.0f;
    const float *up = f->up + o * rank;
    const int32_t j0 = f->sp_ptr ? f->sp_ptr[o] : 0, j1 = f->sp_ptr ? f->sp_ptr[o + 1] : 0;
    const int nv = NV ? NV : (int)((count + 7) / 8);
    vf8 v[8] = {{0}}, lr[8] = {{0}}, sp[8] = {{0}}; /* (only the first nv are used) */
    int64_t n[8] = {0};
    UNROLL for (int q = 0; q < nv; q++) {
        n[q] = NV ? 8 : (count - 8 * q < 0 ? 0 : (count - 8 * q > 8 ? 8 : count - 8 * q));
        v[q] = load8(row + 8 * q, 1, n[q]) + b;
        if (act) {
            vf8 y = v[q] - sh;
            vi8 positive = y >= zero;
            v[q] = (vf8)(((vi8)y & positive) | ((vi8)(sl * y) & ~positive)) + ab;
        }
        if (res) v[q] += load8(res + 8 * q, 1, n[q]);
        lr[q] = sp[q] = zero;
    }
    for (int64_t r = 0; r < rank; r++)
        UNROLL for (int q = 0; q < nv; q++) lr[q] += up[r] * load8(low + r * plane + 8 * q, 1, n[q]);
    for (int32_t j = j0; j < j1; j++) {
        const float w = f->sp_val[j];
        const float *s = src + f->sp_col[j] * plane;
        UNROLL for (int q = 0; q < nv; q++) sp[q] += w * load8(s + 8 * q, 1, n[q]);
    }
    UNROLL for (int q = 0; q < nv; q++) store8(row + 8 * q, 1, n[q], v[q] + lr[q] + sp[q]); /* (BMB + LRMB) + SMB */
}

FLOAT_CLONES static void epilogue_run(const fused_args *f, float *row, const float *res, const float *low,
                                      const float *src, int64_t plane, int64_t o, int64_t g, int64_t count) {
    switch (count) {
    case 64: epilogue_body(f, row, res, low, src, plane, o, g, 8, 64); break;
    case 32: epilogue_body(f, row, res, low, src, plane, o, g, 4, 32); break;
    case 16: epilogue_body(f, row, res, low, src, plane, o, g, 2, 16); break;
    case 8: epilogue_body(f, row, res, low, src, plane, o, g, 1, 8); break;
    default: epilogue_body(f, row, res, low, src, plane, o, g, 0, count);
    }
}

/* pass 2 epilogue on one finished tile, in place: outputs (n, oy, x0..x1) of channels o0..o1; the 1x1
 * branches read x (stride 1) or its samples xs (strided) and low in the output grid, or, where `near` is
 * given, the copy of those pieces that copy_epilogue_inputs() made (rows of CHUNK floats) */
static void fused_epilogue(const fused_args *f, const conv_args *a, int64_t n, int64_t oy, int64_t x0, int64_t x1,
                           int64_t o0, int64_t o1, const float *near) {
    const int64_t O = a->O, C = f->C, HWo = a->Hout * a->Wout;
    const float *src = f->xs ? f->xs : f->x; /* xs: only where the layer strides; else x has the output grid */
    /* activation rows cover blocks of samples (layout 0) or of tokens (layout 1: one image row) */
    const int64_t units = f->layout == 1 ? a->Wout : f->N, span = f->act_rows ? units / f->act_rows : units;
    const int64_t plane = near ? CHUNK : HWo;
    for (int64_t o = o0; o < o1; o++)
        for (int64_t i0 = x0; i0 < x1;) {
            const int64_t unit = f->layout == 1 ? i0 : n, g = unit / span;
            const int64_t i1 = f->layout == 1 && (g + 1) * span < x1 ? (g + 1) * span : x1;
            const int64_t at = oy * a->Wout + i0;
            float *row = a->out + (n * O + o) * HWo + at;
            const float *xin = near ? near + (i0 - x0) : src + n * C * HWo + at;
            const float *low = near ? near + C * CHUNK + (i0 - x0) : f->low + n * f->rank * HWo + at;
            const float *res = !f->residual ? NULL : near ? xin + o * CHUNK : f->x + (n * C + o) * HWo + at;
            epilogue_run(f, row, res, low, xin, plane, o, g, i1 - i0); /* i1 - i0 <= CHUNK */
            i0 = i1;
        }
}

/* --- drivers (OpenMP over independent tiles) ------------------------------------------------- */

/* near = the pieces of x (or its samples xs) and of low that the epilogue of outputs (n, oy, x0..x1) reads:
 * (C + rank) rows of CHUNK floats. In place they are one piece of every channel plane, planes whose size
 * is often a power of two (64 x 64, 256 x 256 floats), so every piece falls into the same cache sets and
 * evicts the others (and what was prefetched) long before the epilogue reads it. Copied in one burst
 * (independent loads, many misses in flight) they are contiguous and stay in L1. */
static void copy_epilogue_inputs(const fused_args *f, const conv_args *a, int64_t n, int64_t oy, int64_t x0,
                                 int64_t x1, float *near) {
    const int64_t HWo = a->Hout * a->Wout, at = oy * a->Wout + x0, bytes = (x1 - x0) * (int64_t)sizeof(float);
    if (f->sp_ptr || f->residual) {
        const float *src = (f->xs ? f->xs : f->x) + n * f->C * HWo + at;
        for (int64_t c = 0; c < f->C; c++) memcpy(near + c * CHUNK, src + c * HWo, (size_t)bytes);
    }
    const float *low = f->low + n * f->rank * HWo + at;
    for (int64_t r = 0; r < f->rank; r++) memcpy(near + (f->C + r) * CHUNK, low + r * HWo, (size_t)bytes);
}

/* f != NULL: apply a fused layer's epilogue to each tile as soon as it is computed */
static void run_conv(const conv_args *a, int threads, const fused_args *f) {
    /* work items: (n, oy, CHUNK-pixel chunk), each over all its 32-channel groups, so that one core reads a
     * chunk's inputs (the packed rows and the epilogue's pieces of x and low, copied once) for every group.
     * Maps too small to give every thread several items (linears, 8 x 8 maps) split over the channel groups
     * as well, and their epilogues read in place. */
    const int64_t oc = 32;
    const int64_t nx = (a->Wout + CHUNK - 1) / CHUNK, no = (a->O + oc - 1) / oc, chunks = a->N * a->Hout * nx;
    const int64_t per_item = chunks >= 8 * threads ? no : 1, items = chunks * (no / per_item);
    const int isa = isa_used;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t item = 0; item < items; item++) {
        int64_t io0 = per_item == 1 ? item % no : 0, rest = per_item == 1 ? item / no : item;
        int64_t ix = rest % nx;
        rest /= nx;
        int64_t oy = rest % a->Hout, n = rest / a->Hout;
        int64_t x0 = ix * CHUNK, x1 = x0 + CHUNK < a->Wout ? x0 + CHUNK : a->Wout;
        float *near = NULL;
        if (f && f->near && per_item > 1) {
#ifdef _OPENMP
            near = f->near + omp_get_thread_num() * (f->C + f->rank) * CHUNK;
#else
            near = f->near;
#endif
            copy_epilogue_inputs(f, a, n, oy, x0, x1, near);
        }
        for (int64_t io = io0; io < io0 + per_item; io++) {
            int64_t o0 = io * oc, o1 = o0 + oc < a->O ? o0 + oc : a->O;
#ifdef BINSR_X86
            if (isa == ISA_AVX512) conv_avx512(a, n, oy, x0, x1, o0, o1);
            else if (isa == ISA_AVX2) conv_avx2(a, n, oy, x0, x1, o0, o1);
            else if (isa == ISA_POPCNT) conv_popcnt(a, n, oy, x0, x1, o0, o1);
            else
#endif
                conv_portable(a, n, oy, x0, x1, o0, o1);
            if (f) fused_epilogue(f, a, n, oy, x0, x1, o0, o1, near);
        }
    }
}

/* sign-pack only (the unfused path): pass 1 of a fused layer without beta and branches */
static void run_pack_nchw(const float *x, const float *thr, uint64_t *out, int64_t N, int64_t C, int64_t H,
                          int64_t W, int64_t ph, int64_t pw, int threads) {
    fused_args f = {0};
    f.x = f.h = x;
    f.N = N, f.C = C, f.H = H, f.W = W, f.thr = thr, f.threads = threads;
    conv_args a = {0};
    a.Cw = (C + 63) / 64, a.Hp = H + 2 * ph, a.Wp = W + 2 * pw, a.ph = ph, a.pw = pw;
    a.sh = a.sw = 1, a.Hout = H, a.Wout = W;
    fused_prepare(&f, &a, out, NULL, NULL, NULL);
}

static void run_pack_rows(const float *x, const float *thr, uint64_t *out, int64_t P, int64_t C, int threads) {
    const int isa = isa_used;
#pragma omp parallel for schedule(dynamic, 64) num_threads(threads)
    for (int64_t p = 0; p < P; p++) {
#ifdef BINSR_X86
        if (isa == ISA_AVX512) { pack_rows_avx512(x + p * C, thr, C, out + p, P); continue; }
        if (isa == ISA_AVX2) { pack_rows_avx2(x + p * C, thr, C, out + p, P); continue; }
#endif
        pack_rows_portable(x + p * C, thr, C, out + p, P);
    }
}


/* Scratch memory reused across calls: fresh large mallocs are mmapped and page-faulted on every layer
 * (glibc returns them at free), which cost more than small layers' arithmetic. One cached block; a
 * call that finds it taken (another Python thread, the GIL being released) uses its own malloc. */
static void *scratch_block = NULL;
static size_t scratch_size = 0;
static int scratch_taken = 0;

static void *scratch_take(size_t size, int *cached) {
    *cached = !__atomic_exchange_n(&scratch_taken, 1, __ATOMIC_ACQUIRE);
    if (!*cached) return malloc(size);
    if (scratch_size < size) {
        free(scratch_block);
        scratch_block = malloc(size);
        scratch_size = scratch_block ? size : 0;
    }
    if (!scratch_block) __atomic_store_n(&scratch_taken, 0, __ATOMIC_RELEASE);
    return scratch_block;
}

static void scratch_give(void *block, int cached) {
    if (cached) __atomic_store_n(&scratch_taken, 0, __ATOMIC_RELEASE);
    else free(block);
}

/* the next 64-byte aligned piece of `bytes` bytes from *at (NULL for 0 bytes) */
static void *carve(char **at, size_t bytes) {
    if (!bytes) return NULL;
    void *piece = *at;
    *at += (bytes + 63) / 64 * 64;
    return piece;
}

/* the whole layer: scratch, pass 1, pass 2 (returns -1 when out of memory) */
static int run_fused(fused_args *f, conv_args *a) {
    const int64_t N = a->N, Cw = a->Cw, Hp = a->Hp, Wp = a->Wp, rows = f->layout == 1, P = f->W, C = f->C;
    const int64_t HWo = a->Hout * a->Wout;
    /* below ~20 us of work a second thread costs more than it saves (waking it, sharing lines) */
    if (N * HWo * a->O * a->kh * a->kw * Cw < (1 << 16)) f->threads = 1;
    const int strided = a->sh != 1 || a->sw != 1, branches = f->rank || f->sp_ptr; /* 1x1 convs reading x */
    const int reads = f->rank || f->sp_ptr || f->residual; /* the epilogue reads pieces of x or low */
    /* BiMaCoSR's scaled layers with a column stride of 2 run the AVX2 8-pixel tile on split rows */
    if (a->sw == 2 && f->pixel_scale && f->layout == 0 && isa_used == ISA_AVX2 && Cw <= 31) a->Wh = (Wp + 1) / 2;
    const size_t sizes[9] = {
        (size_t)(N * Hp * Cw * Wp) * sizeof(uint64_t),                          /* packed words */
        f->pixel_scale ? (size_t)(N * Hp * Wp) * sizeof(float) : 0,            /* beta */
        (size_t)(N * f->rank * HWo) * sizeof(float),                           /* low-rank projections */
        strided && branches ? (size_t)(N * C * HWo) * sizeof(float) : 0,       /* x at the sampled pixels */
        rows ? (size_t)(C * P) * sizeof(float) : 0,                            /* layout 1: x as (C, P) */
        rows && f->h != f->x ? (size_t)(C * P) * sizeof(float) : 0,            /*           h as (C, P) */
        rows ? (size_t)(a->O * P) * sizeof(float) : 0,                         /*           out as (O, P) */
        reads ? (size_t)(f->threads * (C + f->rank) * CHUNK) * sizeof(float) : 0, /* near copies */
        a->Wh ? (size_t)(f->threads * Wp) * sizeof(uint64_t) : 0};               /* split_columns' rows */
    size_t total = 0;
    for (int i = 0; i < 9; i++) total += (sizes[i] + 63) / 64 * 64;
    int cached;
    char *block = scratch_take(total + 64, &cached), *at = (char *)(((uintptr_t)block + 63) / 64 * 64);
    if (!block) return -1;
    uint64_t *act = carve(&at, sizes[0]);
    float *pscale = carve(&at, sizes[1]), *low = carve(&at, sizes[2]), *xs = carve(&at, sizes[3]);
    float *xt = carve(&at, sizes[4]), *ht = carve(&at, sizes[5]), *ot = carve(&at, sizes[6]);
    f->near = carve(&at, sizes[7]);
    uint64_t *split = carve(&at, sizes[8]);
    float *out = f->out;
    f->low = low;
    f->xs = xs;
    f->O = a->O;
    a->act = act;
    a->pscale = pscale;
    a->out = rows ? ot : out;
    if (rows) {
        transpose(f->x, P, C, xt, f->threads);
        if (ht) transpose(f->h, P, C, ht, f->threads);
        f->h = ht ? ht : xt;
        f->x = xt;
    }
    fused_prepare(f, a, act, pscale, xs, split);
    const int epilogue = f->bias || f->act_shift || f->residual || f->rank || f->sp_ptr; /* else alpha is all */
    run_conv(a, f->threads, epilogue ? f : NULL);
    if (rows) transpose(ot, a->O, P, out, f->threads);
    scratch_give(block, cached);
    return 0;
}

/* --- arithmetic limits: what this core's vector units sustain, measured ---------------------------
 *
 * peak_fp32() runs 8 independent chains of 16-float multiply-adds, peak_binary() 8 chains of
 * XOR + popcount + add on 512 bits (the conv kernels' inner step), each for `iterations` rounds on
 * one thread, and returns the multiply-accumulates per second (binary: 512 one-bit MACs per step).
 * Their ratio is the most a binary conv can gain over an fp32 one on this CPU.
 */

#include <time.h>

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

typedef float vf16 __attribute__((vector_size(64)));
PEAK_FP32(peak_fp32_portable, , vf8, 8)
#ifdef BINSR_X86
PEAK_FP32(peak_fp32_avx512, AVX512_ATTR, vf16, 16)
PEAK_FP32(peak_fp32_avx2, AVX2_ATTR, vf8, 8)
#endif

static double peak_fp32(int64_t iterations) { /* the widest fp32 multiply-add PyTorch's oneDNN uses here */
#ifdef BINSR_X86
    if (isa_best == ISA_AVX512) return peak_fp32_avx512(iterations);
    if (isa_best >= ISA_AVX2) return peak_fp32_avx2(iterations);
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

static double peak_binary(int64_t iterations) {
#ifdef BINSR_X86
    if (isa_used == ISA_AVX512) return peak_binary_avx512(iterations);
    if (isa_used == ISA_AVX2) return peak_binary_avx2(iterations);
#endif
    return peak_binary_scalar(iterations);
}

/* --- Python bindings: plain integers (data pointers and sizes); binsr/deploy/kernels.py checks
 * shapes, dtypes and contiguity before calling. ---------------------------------------------- */

#define PTR(v) ((void *)(intptr_t)(v))

static PyObject *py_pack_nchw(PyObject *self, PyObject *args) {
    Py_ssize_t x, thr, out, N, C, H, W, ph, pw;
    int threads;
    if (!PyArg_ParseTuple(args, "nnnnnnnnni", &x, &thr, &out, &N, &C, &H, &W, &ph, &pw, &threads)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    run_pack_nchw(PTR(x), PTR(thr), PTR(out), N, C, H, W, ph, pw, threads);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *py_pack_rows(PyObject *self, PyObject *args) {
    Py_ssize_t x, thr, out, P, C;
    int threads;
    if (!PyArg_ParseTuple(args, "nnnnni", &x, &thr, &out, &P, &C, &threads)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    run_pack_rows(PTR(x), PTR(thr), PTR(out), P, C, threads);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *py_conv(PyObject *self, PyObject *args) {
    Py_ssize_t act, wts, alpha, pscale, corr, out, N, C, O, Hp, Wp, Hout, Wout, kh, kw, sh, sw, ph, pw;
    int threads;
    if (!PyArg_ParseTuple(args, "nnnnnnnnnnnnnnnnnnni", &act, &wts, &alpha, &pscale, &corr, &out, &N, &C, &O, &Hp,
                          &Wp, &Hout, &Wout, &kh, &kw, &sh, &sw, &ph, &pw, &threads))
        return NULL;
    conv_args a = {PTR(act), PTR(wts), PTR(alpha), PTR(pscale), PTR(corr), PTR(out),
                   N, C, (C + 63) / 64, O, Hp, Wp, Hout, Wout, kh, kw, sh, sw, ph, pw};
    Py_BEGIN_ALLOW_THREADS
    run_conv(&a, threads, NULL);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}


/* one named integer (a pointer or a size) from the fused call's dict */
static int get_field(PyObject *d, const char *name, Py_ssize_t *value) {
    PyObject *item = PyDict_GetItemString(d, name); /* borrowed */
    if (!item) { PyErr_Format(PyExc_KeyError, "fused layer field %s is missing", name); return -1; }
    *value = PyLong_AsSsize_t(item);
    return (*value == -1 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *py_fused(PyObject *self, PyObject *args) {
    PyObject *d;
    if (!PyArg_ParseTuple(args, "O!", &PyDict_Type, &d)) return NULL;
    enum { X, HH, LAYOUT, N, C, H, W, THR, PIXEL_SCALE, WTS, ALPHA, CORR, O, KH, KW, SH, SW, PH, PW, BIAS,
           ACT_SHIFT, ACT_SLOPE, ACT_BIAS, ACT_ROWS, RESIDUAL, DOWN, UP, RANK, SP_PTR, SP_COL, SP_VAL, OUT, THREADS,
           NFIELDS };
    static const char *names[NFIELDS] = {"x", "h", "layout", "N", "C", "H", "W", "thr", "pixel_scale", "wts",
                                         "alpha", "corr", "O", "kh", "kw", "sh", "sw", "ph", "pw", "bias", "act_shift",
                                         "act_slope", "act_bias", "act_rows", "residual", "down", "up", "rank",
                                         "sp_ptr", "sp_col", "sp_val", "out", "threads"};
    Py_ssize_t v[NFIELDS];
    for (int i = 0; i < NFIELDS; i++)
        if (get_field(d, names[i], &v[i]) < 0) return NULL;
    fused_args f = {PTR(v[X]), PTR(v[HH]), v[LAYOUT], v[N], v[C], v[H], v[W], PTR(v[THR]), v[PIXEL_SCALE],
                    PTR(v[BIAS]), PTR(v[ACT_SHIFT]), PTR(v[ACT_SLOPE]), PTR(v[ACT_BIAS]), v[ACT_ROWS], v[RESIDUAL],
                    PTR(v[DOWN]), PTR(v[UP]), v[RANK], PTR(v[SP_PTR]), PTR(v[SP_COL]), PTR(v[SP_VAL]), PTR(v[OUT]),
                    NULL, NULL, NULL, (int)v[THREADS], v[O]};
    const int64_t Hp = v[H] + 2 * v[PH], Wp = v[W] + 2 * v[PW];
    conv_args a = {NULL, PTR(v[WTS]), PTR(v[ALPHA]), NULL, PTR(v[CORR]), NULL, v[N], v[C], (v[C] + 63) / 64, v[O], Hp,
                   Wp, (Hp - v[KH]) / v[SH] + 1, (Wp - v[KW]) / v[SW] + 1, v[KH], v[KW], v[SH], v[SW], v[PH], v[PW]};
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = run_fused(&f, &a);
    Py_END_ALLOW_THREADS
    if (status < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *py_peak(PyObject *self, PyObject *args) {
    Py_ssize_t iterations;
    if (!PyArg_ParseTuple(args, "n", &iterations)) return NULL;
    double fp, binary;
    Py_BEGIN_ALLOW_THREADS
    fp = peak_fp32(iterations);
    binary = peak_binary(iterations);
    Py_END_ALLOW_THREADS
    return Py_BuildValue("(dd)", fp, binary);
}

static PyObject *py_isa(PyObject *self, PyObject *noargs) { return PyUnicode_FromString(ISA_NAMES[isa_used]); }

static PyObject *py_isas(PyObject *self, PyObject *noargs) {
    PyObject *names = PyList_New(0);
    for (int i = isa_best; i >= 0 && names; i--) {
        PyObject *s = PyUnicode_FromString(ISA_NAMES[i]);
        if (!s || PyList_Append(names, s) < 0) { Py_XDECREF(s); Py_DECREF(names); return NULL; }
        Py_DECREF(s);
    }
    return names;
}

static PyObject *py_set_isa(PyObject *self, PyObject *args) {
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    for (int i = 0; i <= isa_best; i++)
        if (strcmp(name, ISA_NAMES[i]) == 0) { isa_used = i; Py_RETURN_NONE; }
    PyErr_Format(PyExc_ValueError, "instruction set %s is not available on this CPU", name);
    return NULL;
}

static PyMethodDef methods[] = {
    {"pack_nchw", py_pack_nchw, METH_VARARGS, "sign-pack an NCHW float32 tensor into padded (N, Hp, Cw, Wp) words"},
    {"pack_rows", py_pack_rows, METH_VARARGS, "sign-pack (P, C) float32 rows into (Cw, P) words"},
    {"conv", py_conv, METH_VARARGS, "XNOR-popcount convolution of packed activations and weights"},
    {"fused", py_fused, METH_VARARGS, "a whole packed layer in one call: pack, XNOR-popcount, epilogue (dict of fields)"},
    {"peak", py_peak, METH_VARARGS, "(fp32, binary) multiply-accumulates per second one thread sustains"},
    {"isa", py_isa, METH_NOARGS, "the instruction set the kernels use"},
    {"isas", py_isas, METH_NOARGS, "instruction sets this CPU supports, fastest first"},
    {"set_isa", py_set_isa, METH_VARARGS, "use a (slower) supported instruction set, e.g. for tests"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_bitkernels", .m_doc = "XNOR-popcount CPU kernels", .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC PyInit__bitkernels(void) {
#ifdef BINSR_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("popcnt")) isa_best = ISA_POPCNT;
    if (isa_best == ISA_POPCNT && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) isa_best = ISA_AVX2;
    if (isa_best == ISA_AVX2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vpopcntdq"))
        isa_best = ISA_AVX512;
#endif
    isa_used = isa_best;
    return PyModule_Create(&module);
}
