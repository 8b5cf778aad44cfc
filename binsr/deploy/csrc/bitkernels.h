/*
 * binsr bit kernels: sign-pack activations and XNOR-popcount conv2d / linear on CPUs (shared declarations).
 *
 * Why a C extension: PyTorch has no popcount on packed words, and numba would add a ~50 MB LLVM
 * dependency plus a JIT pause on first use. Plain C99 builds with the compiler a Linux/macOS machine
 * already has, needs no torch headers (so pip's isolated build stays light), and is compiled for
 * baseline x86-64: the fast routines carry __attribute__((target(...))) and one is picked at run time
 * from what the CPU reports (AVX-512 VPOPCNTDQ > AVX-512BW > AVX2 > POPCNT > portable C), so one build
 * runs everywhere. The build is optional: without a compiler binsr falls back to PyTorch (deploy/kernels.py).
 *
 * The files, one concern each:
 *   isa.c           which instruction sets the CPU has and which one the kernels use
 *   conv_portable.c one output at a time (portable C and POPCNT): the reference every other path equals
 *   conv_avx2.c     AVX2 register tiles (nibble-lookup popcount)
 *   conv_avx512.c   AVX-512 register tiles: VPOPCNTDQ, or AVX-512BW byte lookups without it (conv_avx512.inc)
 *   border.c        the zero-padding corrections of unscaled layers, per border class
 *   pack.c          sign packing of float activations (every ISA), transposes, split rows
 *   epilogue.c      the float work of a fused layer: beta, low-rank projections, bias/RPReLU/residual/branches
 *   scratch.c       reusable scratch memory
 *   driver.c        the passes of a layer, parallel over work items (OpenMP)
 *   peak.c          what the vector units sustain in tight loops (the arithmetic limit binsr bench prints)
 *   module.c        the Python module: every buffer's dtype, shape, contiguity and alignment checked here
 *
 * Conventions:
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
#ifndef BINSR_BITKERNELS_H
#define BINSR_BITKERNELS_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define BINSR_X86 1
#endif

/* --- instruction sets (isa.c) ------------------------------------------------------------------ */

enum { ISA_PORTABLE = 0, ISA_POPCNT = 1, ISA_AVX2 = 2, ISA_AVX512BW = 3, ISA_AVX512 = 4, ISA_COUNT = 5 };
extern const char *const binsr_isa_names[ISA_COUNT];
extern int binsr_isa_best; /* what the CPU supports */
extern int binsr_isa_used; /* what the kernels use (<= best; lowered for tests) */
extern int binsr_has_gfni; /* AVX-512 VBMI and GFNI (Ice Lake, Zen 4 and later): packing by bit-matrix transposes */
int binsr_isa_supported(int isa);
int binsr_gfni_supported(void);
void binsr_detect_isa(void);

#define AVX2_ATTR __attribute__((target("avx2,fma,popcnt")))
#define AVX512BW_ATTR __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma,popcnt")))
#define AVX512_ATTR __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx512vpopcntdq,avx2,fma,popcnt")))
#define UNROLL _Pragma("GCC unroll 8")
#define UNROLL4 _Pragma("GCC unroll 4")
#define ALWAYS_INLINE inline __attribute__((always_inline))
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi" /* vector helpers are always inlined: no vector argument crosses an ABI */
#endif

#ifdef BINSR_X86
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
#endif

/* --- one binary conv ----------------------------------------------------------------------------- */

typedef struct {
    const uint64_t *act;  /* (N, Hp, Cw, Wp) */
    const uint64_t *wts;  /* (O, kh, kw, Cw) */
    const float *alpha;   /* (O,) or NULL: output scale per channel */
    const float *pscale;  /* (N, Hp, Wp) or NULL: per-input-pixel scale, 0 on padding */
    const int32_t *corr;  /* (O, kh*kw): sum_c sign(w) per tap (read without pscale, at borders only) */
    const int32_t *ctab;  /* (O, (ph+1)^2, 16) or NULL: corr summed per border class (see border_table) */
    int64_t N, C, Cw, O, Hp, Wp, Hout, Wout, kh, kw, sh, sw, ph, pw;
    int64_t Wh; /* 0: act and pscale rows in column order; else even columns, then the odd ones from Wh on */
    int64_t row0; /* act and pscale hold the rows from padded row n * Hp + iy = row0 on (a band of rows) */
} conv_args;

/* the packed words (Cw runs of Wp) and the per-pixel scales (Wp) of padded input row iy of sample n */
static inline const uint64_t *act_row(const conv_args *a, int64_t n, int64_t iy) {
    return a->act + (n * a->Hp + iy - a->row0) * a->Cw * a->Wp;
}
static inline const float *scale_row(const conv_args *a, int64_t n, int64_t iy) {
    return a->pscale + (n * a->Hp + iy - a->row0) * a->Wp;
}

/* Output tiles. A work item is one output row piece (n, oy, x0 .. x1 < x0 + CHUNK) of a channel range; the
 * ISA routines write its values to a per-thread tile, channel o at tile[(o - o0) * CHUNK + (ox - x0)], where
 * the epilogue finishes them while they are in L1 and from where they are copied to the output. Writing
 * straight to the (N, O, Hout, Wout) planes stored pieces of many planes a power of two apart: the same
 * cache sets, evicted before each line was complete. */
#define CHUNK 64

static inline int tap_row_valid(const conv_args *a, int64_t oy, int64_t ky) {
    int64_t iy = oy * a->sh + ky;
    return iy >= a->ph && iy < a->Hp - a->ph;
}

static inline int tap_col_valid(const conv_args *a, int64_t ox, int64_t kx) {
    int64_t ix = ox * a->sw + kx;
    return ix >= a->pw && ix < a->Wp - a->pw;
}

static inline int tile_touches_border(const conv_args *a, int64_t oy, int64_t ox0, int64_t ox1) {
    if (!tap_row_valid(a, oy, 0) || !tap_row_valid(a, oy, a->kh - 1)) return 1;
    return !tap_col_valid(a, ox0, 0) || !tap_col_valid(a, ox1 - 1, a->kw - 1);
}

/* where padded column ix of an act or pscale row is stored */
static inline int64_t column(const conv_args *a, int64_t ix) { return a->Wh ? (ix & 1) * a->Wh + (ix >> 1) : ix; }

/* outputs (n, o0..o1, oy, x0..x1) of one work item into its tile: every ISA's row routine has this signature */
typedef void (*conv_row_fn)(const conv_args *a, int64_t n, int64_t oy, int64_t x0, int64_t x1, int64_t o0, int64_t o1,
                            float *tile);
#define CONV_ROW(NAME) \
    void NAME(const conv_args *a, int64_t n, int64_t oy, int64_t x0, int64_t x1, int64_t o0, int64_t o1, float *tile)

CONV_ROW(conv_portable);
#ifdef BINSR_X86
CONV_ROW(conv_popcnt);
CONV_ROW(conv_avx2);
CONV_ROW(conv_avx512);
CONV_ROW(conv_avx512bw);
#endif
conv_row_fn conv_row_for(int isa);

/* --- packing and layouts (pack.c) ------------------------------------------------------------------ */

/* one row of W pixels of C channel planes (plane stride HW) -> Cw runs of W words (run stride Wp) */
void pack_nchw_row(int isa, const float *x, const float *thr, int64_t C, int64_t HW, int64_t W, uint64_t *dst,
                   int64_t Wp);
/* (P, C) rows -> (Cw, P) words */
void run_pack_rows(const float *x, const float *thr, uint64_t *out, int64_t P, int64_t C, int threads);
/* dst (cols, rows) = src (rows, cols) */
void transpose(const float *src, int64_t rows, int64_t cols, float *dst, int threads);
void split_columns(const conv_args *a, uint64_t *row, float *srow, uint64_t *tmp);

/* --- fused layers (epilogue.c, driver.c) ------------------------------------------------------------ */

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
    const float *add;                /* (N, O, Hout, Wout) or NULL: added to the output last */
    /* the input transform (layout 0): the layer's input is h = silu?(norm(x) * mul + shift), x given as x
     * (channels 0 .. C1-1) and x2 (channels C1 .. C-1: a concatenation, or NULL) */
    const float *x2;
    int64_t C1;
    int64_t norm_groups;             /* GroupNorm groups, or 0: no norm */
    const float *norm_weight, *norm_bias; /* (C,) */
    float eps;
    const float *mul, *shift;        /* (N, C) or NULL: after the norm (ResShift's 1 + scale and shift) */
    int64_t silu;
    float *low;                      /* scratch (N, rank, Hout, Wout) */
    float *xs;                       /* scratch (N, C, Hout, Wout): x at the pixels a strided layer's 1x1 branches read */
    float *near;                     /* scratch (threads, C + rank, CHUNK): each thread's copy of one chunk's inputs */
    int threads;
    int64_t O;                       /* output channels (as conv_args.O) */
} fused_args;

void beta_low_row(const float *x, const float *h, int64_t C, int64_t plane, int64_t W, float *beta,
                  const float *down, int64_t rank, float *low, int64_t low_plane);
/* where one sample's epilogue reads, for output rows from oy0 on: the 1x1 branches' input (x, or its
 * transform, or its samples at a stride) and the low-rank projections, channel c of output row oy at
 * src[c * src_cs + (oy - oy0) * Wout ...] and low[r * low_cs + (oy - oy0) * Wout ...] */
typedef struct {
    const float *src, *low;
    int64_t src_cs, low_cs, oy0;
} epi_in;

void fused_epilogue(const fused_args *f, const conv_args *a, const epi_in *in, int64_t n, int64_t oy, int64_t x0,
                    int64_t x1, int64_t o0, int64_t o1, const float *near, float *tile);
void copy_epilogue_inputs(const fused_args *f, const conv_args *a, const epi_in *in, int64_t oy, int64_t x0,
                          int64_t x1, float *near);
/* one row of the input transform: h[c, i] = silu?(x[c, i] * scale[c] + shift[c]) for W pixels; x's channels
 * from two planes sets (c < C1: x1, else x2, plane strides p1, p2), h's plane stride hp */
void transform_row(const float *x1, int64_t p1, const float *x2, int64_t p2, int64_t C1, int64_t C, int64_t W,
                   const float *scale, const float *shift, int silu, float *h, int64_t hp);
/* sum and sum of squares of n floats (double accumulators) */
void moments(const float *x, int64_t n, double *sum, double *squares);

/* the corrections of an unscaled padded conv: corr (O, kh*kw) and ctab (O, (ph+1)^2, 16), from the weights */
size_t border_tables_size(const conv_args *a);
void border_tables(conv_args *a, int32_t *corr, int32_t *ctab);
int border_classes_fit(const conv_args *a); /* ph, pw <= 3: ctab holds every class */

/* pass 2 into out (layout 0: (N, O, Hout, Wout); transposed: (Wout, O) rows of a linear) */
void run_conv(const conv_args *a, int threads, const fused_args *f, const epi_in *in, float *out, int transposed);
void run_pack_nchw(const float *x, const float *thr, uint64_t *out, int64_t N, int64_t C, int64_t H, int64_t W,
                   int64_t ph, int64_t pw, int threads);
int run_fused(fused_args *f, conv_args *a); /* -1: out of memory */

/* --- scratch (scratch.c) ----------------------------------------------------------------------------- */

void *scratch_take(size_t size, int *cached);
void scratch_give(void *block, int cached);
void *carve(char **at, size_t bytes);

/* --- arithmetic limits (peak.c) ----------------------------------------------------------------------- */

double peak_fp32(int64_t iterations);
double peak_binary(int64_t iterations);

#endif
