/* The passes of a layer, parallel over independent work items on the OpenMP pool PyTorch also uses:
 * pass 1 packs rows (and computes beta and the low-rank projections), pass 2 computes output tiles
 * (and applies a fused layer's epilogue to each while it is in L1).
 *
 * A conv runs in bands of output rows, one thread per band (dynamic: where another process takes part
 * of a core, the other thread takes more bands): the band's input rows are packed into the thread's own
 * buffers and its output rows computed at once, while the input rows its epilogue reads again are still
 * in the core's L2 (a whole pass 1 before a whole pass 2 read every large input from memory twice).
 * Before that, a layer with an input transform (GroupNorm, the per-sample affine, SiLU, a concatenation)
 * computes its statistics and writes the transformed input once. */
#include <math.h>
#include "bitkernels.h"

/* pass 1 of padded input row yp into row (Cw runs of Wp words) and srow (Wp scales or NULL): sign-pack src (the
 * row's pre-biased input: C planes of W floats, plane stride `plane`; not read on padding rows), beta =
 * mean_c |h|; split rows for a column stride of 2 */
static void prepare_row(const fused_args *f, const conv_args *a, const float *src, int64_t plane, int64_t yp,
                        uint64_t *row, float *srow, uint64_t *split) {
    const int64_t C = f->C, H = f->H, W = f->W, Wp = a->Wp, pw = a->pw;
    memset(row, 0, (size_t)(a->Cw * Wp) * sizeof(uint64_t));
    if (srow) memset(srow, 0, (size_t)Wp * sizeof(float));
    if (yp < a->ph || yp >= H + a->ph) return;
    pack_nchw_row(binsr_isa_used, src, f->thr, C, plane, W, row + pw, Wp);
    if (srow) beta_low_row(src, src, C, plane, W, srow + pw, NULL, 0, NULL, 0);
    if (a->Wh) split_columns(a, row, srow, split);
}

/* pass 1 over every row of a stride-1 input at once (a linear's tokens; the unfused packing): packed words,
 * beta and the low-rank projections of the whole input (act: (N, Hp, Cw, Wp), low: (N, rank, H, W)) */
static void prepare_all_rows(const fused_args *f, const conv_args *a, uint64_t *act, float *pscale) {
    const int64_t C = f->C, H = f->H, W = f->W, Hp = a->Hp, Wp = a->Wp;
    /* dynamic: where another process takes part of one core, the other thread takes more rows */
#pragma omp parallel for schedule(dynamic, 1) num_threads(f->threads)
    for (int64_t r = 0; r < f->N * Hp; r++) {
        const int64_t n = r / Hp, y = r % Hp - a->ph;
        const float *src = y >= 0 && y < H ? f->h + n * C * H * W + y * W : NULL;
        prepare_row(f, a, src, H * W, r % Hp, act + r * a->Cw * Wp, pscale ? pscale + r * Wp : NULL, NULL);
        if (f->rank && y >= 0 && y < H) {
            const float *x = f->x + n * C * H * W + y * W;
            beta_low_row(x, x, C, H * W, W, NULL, f->down, f->rank, f->low + n * f->rank * H * W + y * W, H * W);
        }
    }
}

#ifdef BINSR_X86
/* (each thread fences its streamed stores before the parallel region's closing barrier: fence_streams) */
AVX512BW_ATTR static void stream_row(float *dst, const float *src, int64_t count) { /* dst 64-byte aligned */
    int64_t i = 0;
    for (; i + 16 <= count; i += 16) _mm512_stream_ps(dst + i, _mm512_load_ps(src + i));
    for (; i < count; i++) dst[i] = src[i];
}

AVX2_ATTR static void stream_row_avx2(float *dst, const float *src, int64_t count) { /* dst 32-byte aligned */
    int64_t i = 0;
    for (; i + 8 <= count; i += 8) _mm256_stream_ps(dst + i, _mm256_load_ps(src + i));
    for (; i < count; i++) dst[i] = src[i];
}
#endif

static void fence_streams(void) {
#ifdef BINSR_X86
    _mm_sfence(); /* non-temporal stores are weakly ordered: visible to every thread before the region ends */
#endif
}

/* a finished tile (channels o0..o1, pixels x0..x1 of row oy of sample n) to its place in out */
static void copy_out(const conv_args *a, const float *tile, float *out, int transposed, int64_t n, int64_t oy,
                     int64_t x0, int64_t x1, int64_t o0, int64_t o1) {
    if (transposed) { /* a linear's (P, O) rows: P is the row (Hout = 1) */
        for (int64_t p = x0; p < x1; p++)
            for (int64_t o = o0; o < o1; o++) out[p * a->O + o] = tile[(o - o0) * CHUNK + p - x0];
        return;
    }
    const int64_t count = x1 - x0;
    /* outputs of 8 MB and more (beyond what L2 and a share of L3 keep) are written with non-temporal stores:
     * whole lines, without reading each line first (the 1x1 layers at 256^2 of benchmarks/bench_packed.py) */
    const int stream = binsr_isa_used >= ISA_AVX2 && (double)a->N * a->O * a->Hout * a->Wout >= 2e6;
    for (int64_t o = o0; o < o1; o++) {
        float *dst = out + ((n * a->O + o) * a->Hout + oy) * a->Wout + x0;
        const float *src = tile + (o - o0) * CHUNK;
#ifdef BINSR_X86
        if (stream && binsr_isa_used >= ISA_AVX512BW && !((uintptr_t)dst & 63)) { stream_row(dst, src, count); continue; }
        if (stream && !((uintptr_t)dst & 31)) { stream_row_avx2(dst, src, count); continue; }
#endif
        memcpy(dst, src, (size_t)count * sizeof(float));
    }
}

/* pass 2 of one output row piece (n, oy, x0..x1) over channels o0..o1: tiles, epilogue, copy-out */
static void output_piece(conv_row_fn row_fn, const conv_args *a, const fused_args *f, const epi_in *in, float *out,
                         int transposed, int64_t n, int64_t oy, int64_t x0, int64_t x1, int64_t o0, int64_t o1,
                         const float *near, float *tile) {
    const int64_t oc = 32;
    for (int64_t g0 = o0; g0 < o1; g0 += oc) {
        const int64_t g1 = g0 + oc < o1 ? g0 + oc : o1;
        row_fn(a, n, oy, x0, x1, g0, g1, tile);
        if (f) fused_epilogue(f, a, in, n, oy, x0, x1, g0, g1, near, tile);
        copy_out(a, tile, out, transposed, n, oy, x0, x1, g0, g1);
    }
}

/* pass 2 over a whole prepared input (act holds every row): work items (n, oy, CHUNK-pixel chunk), each over
 * all its 32-channel groups, so that one core reads a chunk's inputs once for every group. Maps too small to
 * give every thread several items (linears of few tokens, 8 x 8 maps) split over the channel groups as
 * well, and their epilogues read in place. f != NULL: a fused layer's epilogue on each tile. */
void run_conv(const conv_args *a, int threads, const fused_args *f, const epi_in *in, float *out, int transposed) {
    const int64_t oc = 32;
    const int64_t nx = (a->Wout + CHUNK - 1) / CHUNK, no = (a->O + oc - 1) / oc, chunks = a->N * a->Hout * nx;
    const int64_t per_item = chunks >= 8 * threads ? no : 1, items = chunks * (no / per_item);
    const conv_row_fn row_fn = conv_row_for(binsr_isa_used);
#pragma omp parallel num_threads(threads)
    {
        float tile[32 * CHUNK] __attribute__((aligned(64))); /* this thread's tile: oc channels x CHUNK pixels */
#pragma omp for schedule(dynamic, 1)
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
                copy_epilogue_inputs(f, a, in, oy, x0, x1, near);
            }
            const int64_t o0 = io0 * oc, o1 = (io0 + per_item) * oc < a->O ? (io0 + per_item) * oc : a->O;
            output_piece(row_fn, a, f, in, out, transposed, n, oy, x0, x1, o0, o1, near, tile);
        }
        fence_streams();
    }
}

/* sign-pack only (the unfused path): pass 1 without beta and branches */
void run_pack_nchw(const float *x, const float *thr, uint64_t *out, int64_t N, int64_t C, int64_t H, int64_t W,
                   int64_t ph, int64_t pw, int threads) {
    fused_args f = {0};
    f.x = f.h = x;
    f.N = N, f.C = C, f.H = H, f.W = W, f.thr = thr, f.threads = threads;
    conv_args a = {0};
    a.Cw = (C + 63) / 64, a.Hp = H + 2 * ph, a.Wp = W + 2 * pw, a.ph = ph, a.pw = pw;
    a.sh = a.sw = 1, a.Hout = H, a.Wout = W;
    prepare_all_rows(&f, &a, out, NULL);
}

/* --- the input transform ------------------------------------------------------------------------------- */

/* channel c of sample n of the layer's raw input (x, or x2 past C1), plane after plane */
static const float *raw_plane(const fused_args *f, int64_t n, int64_t c) {
    const int64_t HW = f->H * f->W;
    return c < f->C1 ? f->x + (n * f->C1 + c) * HW : f->x2 + (n * (f->C - f->C1) + c - f->C1) * HW;
}

/* the transform as one affine per channel before the SiLU: h = silu?(x * scale + shift), scale and shift
 * (N, C) from the GroupNorm statistics of x (one read of the whole input), mul and shift */
static void transform_affine(const fused_args *f, float *scale, float *shift) {
    const int64_t N = f->N, C = f->C, G = f->norm_groups, HW = f->H * f->W;
    if (!G) {
        for (int64_t i = 0; i < N * C; i++) scale[i] = 1.0f, shift[i] = 0.0f;
        return;
    }
    const int64_t per = C / G;
#pragma omp parallel for schedule(dynamic, 1) num_threads(f->threads)
    for (int64_t ng = 0; ng < N * G; ng++) {
        const int64_t n = ng / G, g = ng % G;
        double sum = 0.0, squares = 0.0;
        for (int64_t c = g * per; c < (g + 1) * per; c++) {
            double s, q;
            moments(raw_plane(f, n, c), HW, &s, &q);
            sum += s, squares += q;
        }
        const double count = (double)(per * HW), mean = sum / count;
        const double var = squares / count - mean * mean;
        const double rstd = 1.0 / sqrt((var > 0.0 ? var : 0.0) + (double)f->eps);
        for (int64_t c = g * per; c < (g + 1) * per; c++) {
            const double a = (double)f->norm_weight[c] * rstd, b = (double)f->norm_bias[c] - mean * a;
            const double m = f->mul ? (double)f->mul[n * C + c] : 1.0, d = f->shift ? (double)f->shift[n * C + c] : 0.0;
            scale[n * C + c] = (float)(a * m);
            shift[n * C + c] = (float)(b * m + d);
        }
    }
}

/* --- one conv in bands of output rows ----------------------------------------------------------------------- */

/* per-thread buffers of a band: its input rows' words and scales, the epilogue's samples of a strided input,
 * the low-rank rows, near copies, split rows, the transformed input rows */
typedef struct {
    size_t act, pscale, xs, low, near, split, h;
} band_sizes;

static size_t band_total(const band_sizes *b) {
    const size_t parts[7] = {b->act, b->pscale, b->xs, b->low, b->near, b->split, b->h};
    size_t total = 0;
    for (int i = 0; i < 7; i++) total += (parts[i] + 63) / 64 * 64;
    return total;
}

/* the layer in bands of B output rows; hp: what is packed, xp: what the 1x1 branches and the residual read.
 * With an input transform (scale, shift: its affine, see transform_affine) each band transforms the input
 * rows it reads into its own buffer (C planes of rows_in rows) and packs and reads those: the transformed
 * input never goes to memory (written whole and read again it cost two passes over the largest planes). */
static void run_bands(const fused_args *f, const conv_args *a, const float *hp, const float *xp, int64_t B,
                      const band_sizes *sizes, char *scratch, const float *scale, const float *shift) {
    const int64_t N = f->N, C = f->C, H = f->H, W = f->W, HW = H * W, Cw = a->Cw, Wp = a->Wp, ph = a->ph;
    const int64_t Ho = a->Hout, Wo = a->Wout, sh = a->sh, sw = a->sw, rank = f->rank;
    const int64_t nb = (Ho + B - 1) / B, per_thread = (int64_t)band_total(sizes), rows_in = (B - 1) * sh + a->kh;
    const int strided = sh != 1 || sw != 1, reads = f->rank || f->sp_ptr || f->residual;
    const int epilogue = f->bias || f->act_shift || f->residual || f->rank || f->sp_ptr || f->add;
    const conv_row_fn row_fn = conv_row_for(binsr_isa_used);
#pragma omp parallel num_threads(f->threads)
    {
#ifdef _OPENMP
        char *at = scratch + omp_get_thread_num() * per_thread;
#else
        char *at = scratch;
#endif
        uint64_t *act = carve(&at, sizes->act);
        float *pscale = carve(&at, sizes->pscale), *xs = carve(&at, sizes->xs), *low = carve(&at, sizes->low);
        float *near = carve(&at, sizes->near);
        uint64_t *split = carve(&at, sizes->split);
        float *hb = carve(&at, sizes->h);
        float tile[32 * CHUNK] __attribute__((aligned(64)));
        /* channel c of unpadded input row y of the band's sample (y inside the band's rows iy0 - ph ..) */
        const int64_t plane = hb ? rows_in * W : HW;
#pragma omp for schedule(dynamic, 1)
        for (int64_t band = 0; band < N * nb; band++) {
            const int64_t n = band / nb, oy0 = band % nb * B, oy1 = oy0 + B < Ho ? oy0 + B : Ho;
            const int64_t iy0 = oy0 * sh, iy1 = (oy1 - 1) * sh + a->kh;
            /* row y of the sample's input as the band reads it, its own transformed rows or the input's, is at
             * base + (y + skip) * W (an index, so no pointer before the buffer is ever formed) */
            const float *base = hb ? hb : xp + n * C * HW;
            const int64_t skip = hb ? ph - iy0 : 0;
            conv_args la = *a;
            la.act = act;
            la.pscale = f->pixel_scale ? pscale : NULL;
            la.row0 = n * a->Hp + iy0;
            for (int64_t yp = iy0; yp < iy1; yp++) {
                const int64_t y = yp - ph;
                const int inside = y >= 0 && y < H;
                if (hb && inside) {
                    const float *x2 = f->x2 ? f->x2 + n * (C - f->C1) * HW + y * W : NULL;
                    transform_row(f->x + n * f->C1 * HW + y * W, HW, x2, HW, f->C1, C, W, scale + n * C,
                                  shift + n * C, (int)f->silu, hb + (yp - iy0) * W, plane);
                }
                const float *src = !inside ? NULL : hb ? base + (y + skip) * W : hp + n * C * HW + y * W;
                prepare_row(f, a, src, plane, yp, act + (yp - iy0) * Cw * Wp,
                            la.pscale ? pscale + (yp - iy0) * Wp : NULL, split);
            }
            /* the epilogue's inputs at the output pixels: the input's rows themselves at stride 1, else samples */
            epi_in in = {base + (oy0 + skip) * W, low, plane, B * Wo, oy0};
            if (strided && sizes->xs) {
                in.src = xs, in.src_cs = B * Wo;
                for (int64_t oy = oy0; oy < oy1; oy++)
                    for (int64_t c = 0; c < C; c++) {
                        const float *from = base + c * plane + (oy * sh + skip) * W;
                        float *to = xs + c * B * Wo + (oy - oy0) * Wo;
                        for (int64_t ox = 0; ox < Wo; ox++) to[ox] = from[ox * sw];
                    }
            }
            if (rank)
                for (int64_t oy = oy0; oy < oy1; oy++)
                    beta_low_row(in.src + (oy - oy0) * Wo, in.src + (oy - oy0) * Wo, C, in.src_cs, Wo, NULL, f->down, rank,
                                 low + (oy - oy0) * Wo, B * Wo);
            for (int64_t oy = oy0; oy < oy1; oy++)
                for (int64_t x0 = 0; x0 < Wo; x0 += CHUNK) {
                    const int64_t x1 = x0 + CHUNK < Wo ? x0 + CHUNK : Wo;
                    if (epilogue && reads) copy_epilogue_inputs(f, &la, &in, oy, x0, x1, near);
                    output_piece(row_fn, &la, epilogue ? f : NULL, &in, f->out, 0, n, oy, x0, x1, 0, a->O,
                                 reads ? near : NULL, tile);
                }
        }
        fence_streams();
    }
}

/* the whole layer (returns -1 when out of memory) */
int run_fused(fused_args *f, conv_args *a) {
    const int64_t N = a->N, Cw = a->Cw, Hp = a->Hp, Wp = a->Wp, rows = f->layout == 1, P = f->W, C = f->C;
    const int64_t HWo = a->Hout * a->Wout, W = f->W, rank = f->rank;
    /* below 2^16 word operations a second thread costs more than it saves (waking it, sharing lines) */
    if (N * HWo * a->O * a->kh * a->kw * Cw < (1 << 16)) f->threads = 1;
    const int strided = a->sh != 1 || a->sw != 1, branches = f->rank || f->sp_ptr; /* 1x1 convs reading x */
    const int reads = f->rank || f->sp_ptr || f->residual; /* the epilogue reads pieces of x or low */
    const int transform = f->norm_groups || f->silu || f->x2;
    /* a column stride of 2 reads rows split into even and odd columns: the AVX-512 tiles and the AVX2 8-pixel
     * tile of BiMaCoSR's scaled layers */
    const int isa = binsr_isa_used;
    if (a->sw == 2 && !rows &&
        (isa == ISA_AVX512 || isa == ISA_AVX512BW || (isa == ISA_AVX2 && f->pixel_scale && Cw <= 31)))
        a->Wh = (Wp + 1) / 2;
    f->O = a->O;
    int cached;
    if (!rows) {
        /* bands of B output rows: the input rows a band reads again (C x W floats each: its transformed
         * rows, or the rows its epilogue reads) fit in half of a 1 MB L2 where it reads any, at least
         * 4 (kh - 1) / sh rows, and a few bands per thread */
        int64_t B = reads || transform ? (int64_t)(524288 / ((size_t)(C > 0 ? C : 1) * (size_t)W * sizeof(float))) : 16;
        const int64_t few = (a->Hout + 2 * f->threads - 1) / (2 * f->threads), least = 4 * (a->kh - 1) / a->sh;
        B = B < least ? least : B; /* a band packs kh - 1 rows more than it has: at most a quarter more */
        B = B < 1 ? 1 : B > 16 ? 16 : B;
        B = B < few ? B : few < 1 ? 1 : few;
        const int64_t rows_in = (B - 1) * a->sh + a->kh;
        band_sizes bs = {(size_t)(rows_in * Cw * Wp) * sizeof(uint64_t),
                         f->pixel_scale ? (size_t)(rows_in * Wp) * sizeof(float) : 0,
                         strided && branches ? (size_t)(C * B * a->Wout) * sizeof(float) : 0,
                         (size_t)(rank * B * a->Wout) * sizeof(float),
                         reads ? (size_t)((C + rank) * CHUNK) * sizeof(float) : 0,
                         a->Wh ? (size_t)Wp * sizeof(uint64_t) : 0,
                         transform ? (size_t)(C * rows_in * W) * sizeof(float) : 0};
        const size_t affine = transform ? (size_t)(2 * N * C) * sizeof(float) : 0;
        const size_t total = (size_t)f->threads * band_total(&bs) + (affine + 63) / 64 * 64;
        char *block = scratch_take(total + 64, &cached), *at = (char *)(((uintptr_t)block + 63) / 64 * 64);
        if (!block) return -1;
        float *scale = NULL, *shift = NULL;
        if (transform) {
            scale = carve(&at, (size_t)(N * C) * sizeof(float)), shift = carve(&at, (size_t)(N * C) * sizeof(float));
            transform_affine(f, scale, shift);
        }
        run_bands(f, a, f->h, f->x, B, &bs, at, scale, shift);
        scratch_give(block, cached);
        return 0;
    }
    /* a linear: its P tokens as one row of P pixels, transposed to channel planes, in two whole passes */
    const size_t sizes[6] = {
        (size_t)(N * Hp * Cw * Wp) * sizeof(uint64_t),                          /* packed words */
        f->pixel_scale ? (size_t)(N * Hp * Wp) * sizeof(float) : 0,            /* beta */
        (size_t)(N * rank * HWo) * sizeof(float),                              /* low-rank projections */
        (size_t)(C * P) * sizeof(float),                                       /* x as (C, P) */
        f->h != f->x ? (size_t)(C * P) * sizeof(float) : 0,                    /* h as (C, P) */
        reads ? (size_t)(f->threads * (C + rank) * CHUNK) * sizeof(float) : 0}; /* near copies */
    size_t total = 0;
    for (int i = 0; i < 6; i++) total += (sizes[i] + 63) / 64 * 64;
    char *block = scratch_take(total + 64, &cached), *at = (char *)(((uintptr_t)block + 63) / 64 * 64);
    if (!block) return -1;
    uint64_t *act = carve(&at, sizes[0]);
    float *pscale = carve(&at, sizes[1]), *low = carve(&at, sizes[2]);
    float *xt = carve(&at, sizes[3]), *ht = carve(&at, sizes[4]);
    f->near = carve(&at, sizes[5]);
    f->low = low;
    f->xs = NULL;
    a->act = act;
    a->pscale = pscale;
    transpose(f->x, P, C, xt, f->threads);
    if (ht) transpose(f->h, P, C, ht, f->threads);
    f->h = ht ? ht : xt;
    f->x = xt;
    prepare_all_rows(f, a, act, pscale);
    const int epilogue = f->bias || f->act_shift || f->residual || f->rank || f->sp_ptr || f->add;
    const epi_in in = {xt, low, HWo, HWo, 0};
    run_conv(a, f->threads, epilogue ? f : NULL, &in, f->out, 1);
    scratch_give(block, cached);
    return 0;
}
