/* The float work of a fused layer: BiMaCoSR's beta and low-rank projections (pass 1) and, while each output
 * tile is in L1, bias, RPReLU/TaA, the identity residual and the low-rank and sparse branches (pass 2).
 * Plain C on GCC/clang vector extensions, compiled for several instruction sets (target_clones). */
#include <math.h>
#include "bitkernels.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi" /* vector helpers are always inlined into each clone: no ABI crosses */
#endif
#if defined(BINSR_X86) && defined(__linux__)
#define FLOAT_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FLOAT_CLONES
#endif

/* 8 floats: GCC/clang vector extensions, compiled for each FLOAT_CLONES target (ymm, 2 xmm, ...) */
typedef float vf8 __attribute__((vector_size(32)));
typedef int32_t vi8 __attribute__((vector_size(32)));

/* n <= 8 values p[0 .. n-1]; lanes past n are 0. A ragged vector is built in registers: assembled on the
 * stack and read back whole it costs a failed store-to-load forward per load */
static inline __attribute__((always_inline)) vf8 load8(const float *p, int64_t n) {
    vf8 v;
    if (n == 8) memcpy(&v, p, sizeof v);
    else v = (vf8){n > 0 ? p[0] : 0.0f, n > 1 ? p[1] : 0.0f, n > 2 ? p[2] : 0.0f, n > 3 ? p[3] : 0.0f,
                   n > 4 ? p[4] : 0.0f, n > 5 ? p[5] : 0.0f, n > 6 ? p[6] : 0.0f, n > 7 ? p[7] : 0.0f};
    return v;
}

static inline __attribute__((always_inline)) void store8(float *p, int64_t n, vf8 v) {
    if (n == 8) memcpy(p, &v, sizeof v);
    else for (int k = 0; k < 8; k++)
        if (k < n) p[k] = v[k];
}


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
            UNROLL4 for (int q = 0; q < nv; q++) acc[q] += (vf8)((vi8)load8(h + c * plane + 8 * q, n[q]) & magnitude);
        UNROLL4 for (int q = 0; q < nv; q++) store8(beta + 8 * q, n[q], acc[q] / (float)C);
    }
    for (int64_t r0 = 0; r0 < rank; r0 += 4) {
        const int64_t nr = rank - r0 < 4 ? rank - r0 : 4;
        vf8 acc[4][4];
        UNROLL4 for (int r = 0; r < 4; r++) UNROLL4 for (int q = 0; q < 4; q++) acc[r][q] = zero;
        for (int64_t c = 0; c < C; c++) {
            vf8 xv[4] = {zero, zero, zero, zero}; /* (only the first nv are used) */
            UNROLL4 for (int q = 0; q < nv; q++) xv[q] = load8(x + c * plane + 8 * q, n[q]);
            UNROLL4 for (int r = 0; r < 4; r++) {
                const float d = r < nr ? down[(r0 + r) * C + c] : 0.0f;
                UNROLL4 for (int q = 0; q < nv; q++) acc[r][q] += d * xv[q];
            }
        }
        for (int r = 0; r < nr; r++)
            UNROLL4 for (int q = 0; q < nv; q++) store8(low + (r0 + r) * low_plane + 8 * q, n[q], acc[r][q]);
    }
}

/* beta[i] = mean_c |h[c, i]| and low[r, i] = sum_c D[r, c] x[c, i] for one row of W pixels (beta or low
 * may be NULL): 32 pixels x 4 ranks of accumulators, so each value loaded feeds 4 multiply-adds */
FLOAT_CLONES void beta_low_row(const float *x, const float *h, int64_t C, int64_t plane, int64_t W,
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

/* pass 2 epilogue on `count` (<= 64) contiguous outputs of one tile row (channel o), all with activation
 * row g. NV vectors of 8 (a constant after inlining: plain vector loads), or NV = 0 for a ragged count.
 * Eight vectors of accumulators keep the rank and sparse sums independent chains. */
static inline __attribute__((always_inline)) void epilogue_body(const fused_args *f, float *row, const float *res,
                                                               const float *low, const float *src, const float *add,
                                                               int64_t plane, int64_t o, int64_t g, const int NV,
                                                               int64_t count) {
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
        v[q] = load8(row + 8 * q, n[q]) + b;
        if (act) {
            vf8 y = v[q] - sh;
            vi8 positive = y >= zero;
            v[q] = (vf8)(((vi8)y & positive) | ((vi8)(sl * y) & ~positive)) + ab;
        }
        if (res) v[q] += load8(res + 8 * q, n[q]);
        lr[q] = sp[q] = zero;
    }
    for (int64_t r = 0; r < rank; r++)
        UNROLL for (int q = 0; q < nv; q++) lr[q] += up[r] * load8(low + r * plane + 8 * q, n[q]);
    for (int32_t j = j0; j < j1; j++) {
        const float w = f->sp_val[j];
        const float *s = src + f->sp_col[j] * plane;
        UNROLL for (int q = 0; q < nv; q++) sp[q] += w * load8(s + 8 * q, n[q]);
    }
    UNROLL for (int q = 0; q < nv; q++) { /* ((BMB + LRMB) + SMB) [+ add] */
        vf8 total = v[q] + lr[q] + sp[q];
        if (add) total += load8(add + 8 * q, n[q]);
        store8(row + 8 * q, n[q], total);
    }
}

FLOAT_CLONES static void epilogue_run(const fused_args *f, float *row, const float *res, const float *low,
                                      const float *src, const float *add, int64_t plane, int64_t o, int64_t g,
                                      int64_t count) {
    if (count == 64) {
        epilogue_body(f, row, res, low, src, add, plane, o, g, 8, 64);
        return;
    }
    for (int64_t i = 0; i < count;) { /* pieces of 32, 16 and 8 pixels, then single ones */
        const int64_t left = count - i;
        const float *rs = res ? res + i : NULL, *ad = add ? add + i : NULL;
        if (left >= 32) epilogue_body(f, row + i, rs, low + i, src + i, ad, plane, o, g, 4, 32), i += 32;
        else if (left >= 16) epilogue_body(f, row + i, rs, low + i, src + i, ad, plane, o, g, 2, 16), i += 16;
        else if (left >= 8) epilogue_body(f, row + i, rs, low + i, src + i, ad, plane, o, g, 1, 8), i += 8;
        else epilogue_body(f, row + i, rs, low + i, src + i, ad, plane, o, g, 0, left), i = count;
    }
}

/* pass 2 epilogue on one finished tile, in place in the tile: outputs (n, oy, x0..x1) of channels o0..o1. The
 * 1x1 branches and the residual read `in`'s source and low-rank rows at the output pixels, or, where `near`
 * is given, the copy of those pieces that copy_epilogue_inputs() made (rows of CHUNK floats) */
void fused_epilogue(const fused_args *f, const conv_args *a, const epi_in *in, int64_t n, int64_t oy, int64_t x0,
                    int64_t x1, int64_t o0, int64_t o1, const float *near, float *tile) {
    const int64_t C = f->C, HWo = a->Hout * a->Wout, at = (oy - in->oy0) * a->Wout;
    /* activation rows cover blocks of samples (layout 0) or of tokens (layout 1: one image row) */
    const int64_t units = f->layout == 1 ? a->Wout : f->N, span = f->act_rows ? units / f->act_rows : units;
    const int64_t plane = near ? CHUNK : in->src_cs; /* (in place: src_cs == low_cs) */
    for (int64_t o = o0; o < o1; o++)
        for (int64_t i0 = x0; i0 < x1;) {
            const int64_t unit = f->layout == 1 ? i0 : n, g = unit / span;
            const int64_t i1 = f->layout == 1 && (g + 1) * span < x1 ? (g + 1) * span : x1;
            float *row = tile + (o - o0) * CHUNK + (i0 - x0);
            const float *xin = near ? near + (i0 - x0) : in->src + at + i0;
            const float *low = near ? near + C * CHUNK + (i0 - x0) : in->low + at + i0;
            const float *res = !f->residual ? NULL : xin + o * plane;
            const float *add = f->add ? f->add + (n * a->O + o) * HWo + oy * a->Wout + i0 : NULL;
            epilogue_run(f, row, res, low, xin, add, plane, o, g, i1 - i0); /* i1 - i0 <= CHUNK */
            i0 = i1;
        }
}

/* near = the pieces of the epilogue's source and of low that the outputs (n, oy, x0..x1) read: (C + rank) rows
 * of CHUNK floats. In place they are one piece of every channel plane, planes whose size is often a power
 * of two (64 x 64, 256 x 256 floats), so every piece falls into the same cache sets and evicts the others
 * (and what was prefetched) long before the epilogue reads it. Copied in one burst (independent loads, many
 * misses in flight) they are contiguous and stay in L1. */
void copy_epilogue_inputs(const fused_args *f, const conv_args *a, const epi_in *in, int64_t oy, int64_t x0,
                          int64_t x1, float *near) {
    const int64_t at = (oy - in->oy0) * a->Wout + x0, bytes = (x1 - x0) * (int64_t)sizeof(float);
    if (f->sp_ptr || f->residual)
        for (int64_t c = 0; c < f->C; c++) memcpy(near + c * CHUNK, in->src + c * in->src_cs + at, (size_t)bytes);
    for (int64_t r = 0; r < f->rank; r++)
        memcpy(near + (f->C + r) * CHUNK, in->low + r * in->low_cs + at, (size_t)bytes);
}

/* --- the input transform: GroupNorm statistics, the per-channel affine, SiLU ------------------------------- */

/* 16 floats: an AVX-512 register in the x86-64-v4 clone, two or four narrower ones in the others */
typedef float vf16 __attribute__((vector_size(64)));
typedef int32_t vi16 __attribute__((vector_size(64)));

static inline __attribute__((always_inline)) vf16 select16(vi16 m, vf16 a, vf16 b) { /* m ? a : b, per lane */
    return (vf16)(((vi16)a & m) | ((vi16)b & ~m));
}

/* e^x for 16 floats: x = n ln2 + r (|r| <= ln2 / 2, ln 2 split in two for an exact product), e^r by the
 * classic degree-6 polynomial of Cephes' expf (about 1 ulp), 2^n by the exponent bits. Below -87.3: 0 (the
 * smallest normal floats are lost: nothing here reads them); above 88.72: +inf (so x / (1 + e^-x) is -0
 * there, as PyTorch's SiLU gives). */
static inline __attribute__((always_inline)) vf16 exp16(vf16 x) {
    const vf16 zero = {0}, hi = zero + 88.7228394f, lo = zero - 87.3365448f;
    const vi16 over = x > hi, under = x < lo;
    x = select16(over, hi, select16(under, lo, x));
    const vi16 k = __builtin_convertvector(x * 1.44269504f + select16(x >= zero, zero + 0.5f, zero - 0.5f), vi16);
    const vf16 n = __builtin_convertvector(k, vf16);
    const vf16 r = x - n * 0.693359375f + n * 2.12194440e-4f;
    vf16 p = zero + 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const vf16 e = p * (vf16)((k + 126) << 23) * 2.0f; /* 2^(k-1) * 2: k reaches 128 below the overflow */
    return select16(over, (vf16)((vi16){0} + 0x7f800000), select16(under, zero, e));
}

/* y = x * a + b, then SiLU y / (1 + e^-y), on up to 16 floats */
static inline __attribute__((always_inline)) vf16 transform16(vf16 v, float a, float b, int silu) {
    const vf16 y = v * a + b;
    return silu ? y / (1.0f + exp16(-y)) : y;
}

FLOAT_CLONES void transform_row(const float *x1, int64_t p1, const float *x2, int64_t p2, int64_t C1, int64_t C,
                                int64_t W, const float *scale, const float *shift, int silu, float *h, int64_t hp) {
    for (int64_t c = 0; c < C; c++) {
        const float *src = c < C1 ? x1 + c * p1 : x2 + (c - C1) * p2;
        float *dst = h + c * hp;
        const float a = scale[c], b = shift[c];
        int64_t i = 0;
        for (; i + 16 <= W; i += 16) {
            vf16 v;
            memcpy(&v, src + i, sizeof v);
            v = transform16(v, a, b, silu);
            memcpy(dst + i, &v, sizeof v);
        }
        if (i < W) { /* the row's end (the lanes past it are 0 and dropped) */
            vf16 v = {0};
            memcpy(&v, src + i, (size_t)(W - i) * sizeof(float));
            v = transform16(v, a, b, silu);
            memcpy(dst + i, &v, (size_t)(W - i) * sizeof(float));
        }
    }
}

FLOAT_CLONES void moments(const float *x, int64_t n, double *sum, double *squares) {
    double s = 0.0, q = 0.0;
    for (int64_t i0 = 0; i0 < n; i0 += 4096) { /* float partial sums of 4096 values, then double */
        const int64_t m = n - i0 < 4096 ? n - i0 : 4096;
        vf8 vs = {0}, vq = {0};
        int64_t i = 0;
        for (; i + 8 <= m; i += 8) {
            const vf8 v = load8(x + i0 + i, 8);
            vs += v;
            vq += v * v;
        }
        for (int k = 0; k < 8; k++) s += vs[k], q += vq[k];
        for (; i < m; i++) s += x[i0 + i], q += (double)x[i0 + i] * x[i0 + i];
    }
    *sum = s;
    *squares = q;
}
