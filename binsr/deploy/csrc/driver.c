/* The passes of a layer, parallel over independent work items on the OpenMP pool PyTorch also uses:
 * pass 1 packs rows (and computes beta and the low-rank projections), pass 2 computes output tiles
 * (and applies a fused layer's epilogue to each while it is in L1). */
#include "bitkernels.h"

/* pass 1: one padded row of packed words and beta per (n, yp); on rows the output samples (every sh-th),
 * the low-rank projections and, for strided layers, x at the sampled pixels (xs: (N, C, Hout, Wout)),
 * so that pass 2 reads both contiguously. With a->Wh, rows are stored in column() order (split: Wp words
 * of scratch per thread) */
static void fused_prepare(const fused_args *f, const conv_args *a, uint64_t *act, float *pscale, float *xs,
                          uint64_t *split) {
    const int64_t N = f->N, C = f->C, H = f->H, W = f->W, Cw = a->Cw, Hp = a->Hp, Wp = a->Wp;
    const int64_t ph = a->ph, pw = a->pw, sh = a->sh, sw = a->sw, Ho = a->Hout, Wo = a->Wout;
    const int strided = sh != 1 || sw != 1;
    const int isa = binsr_isa_used;
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
        pack_nchw_row(isa, src, f->thr, C, H * W, W, row + pw, Wp);
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

/* a finished tile (channels o0..o1, pixels x0..x1 of row oy of sample n) to its place in out */
static void copy_out(const conv_args *a, const float *tile, float *out, int transposed, int64_t n, int64_t oy,
                     int64_t x0, int64_t x1, int64_t o0, int64_t o1) {
    if (transposed) { /* a linear's (P, O) rows: P is the row (Hout = 1) */
        for (int64_t p = x0; p < x1; p++)
            for (int64_t o = o0; o < o1; o++) out[p * a->O + o] = tile[(o - o0) * CHUNK + p - x0];
        return;
    }
    const int64_t count = x1 - x0;
    for (int64_t o = o0; o < o1; o++) {
        float *dst = out + ((n * a->O + o) * a->Hout + oy) * a->Wout + x0;
        const float *src = tile + (o - o0) * CHUNK;
        memcpy(dst, src, (size_t)count * sizeof(float));
    }
}

/* f != NULL: apply a fused layer's epilogue to each tile as soon as it is computed */
void run_conv(const conv_args *a, int threads, const fused_args *f, float *out, int transposed) {
    /* work items: (n, oy, CHUNK-pixel chunk), each over all its 32-channel groups, so that one core reads a
     * chunk's inputs (the packed rows and the epilogue's pieces of x and low, copied once) for every group.
     * Maps too small to give every thread several items (linears, 8 x 8 maps) split over the channel groups
     * as well, and their epilogues read in place. */
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
                copy_epilogue_inputs(f, a, n, oy, x0, x1, near);
            }
            for (int64_t io = io0; io < io0 + per_item; io++) {
                int64_t o0 = io * oc, o1 = o0 + oc < a->O ? o0 + oc : a->O;
                row_fn(a, n, oy, x0, x1, o0, o1, tile);
                if (f) fused_epilogue(f, a, n, oy, x0, x1, o0, o1, near, tile);
                copy_out(a, tile, out, transposed, n, oy, x0, x1, o0, o1);
            }
        }
    }
}

/* sign-pack only (the unfused path): pass 1 of a fused layer without beta and branches */
void run_pack_nchw(const float *x, const float *thr, uint64_t *out, int64_t N, int64_t C, int64_t H, int64_t W,
                   int64_t ph, int64_t pw, int threads) {
    fused_args f = {0};
    f.x = f.h = x;
    f.N = N, f.C = C, f.H = H, f.W = W, f.thr = thr, f.threads = threads;
    conv_args a = {0};
    a.Cw = (C + 63) / 64, a.Hp = H + 2 * ph, a.Wp = W + 2 * pw, a.ph = ph, a.pw = pw;
    a.sh = a.sw = 1, a.Hout = H, a.Wout = W;
    fused_prepare(&f, &a, out, NULL, NULL, NULL);
}

/* the whole layer: scratch, pass 1, pass 2 (returns -1 when out of memory) */
int run_fused(fused_args *f, conv_args *a) {
    const int64_t N = a->N, Cw = a->Cw, Hp = a->Hp, Wp = a->Wp, rows = f->layout == 1, P = f->W, C = f->C;
    const int64_t HWo = a->Hout * a->Wout;
    /* below ~20 us of work a second thread costs more than it saves (waking it, sharing lines) */
    if (N * HWo * a->O * a->kh * a->kw * Cw < (1 << 16)) f->threads = 1;
    const int strided = a->sh != 1 || a->sw != 1, branches = f->rank || f->sp_ptr; /* 1x1 convs reading x */
    const int reads = f->rank || f->sp_ptr || f->residual; /* the epilogue reads pieces of x or low */
    /* a column stride of 2 reads rows split into even and odd columns: the AVX-512 tiles and the AVX2 8-pixel
     * tile of BiMaCoSR's scaled layers */
    const int isa = binsr_isa_used;
    if (a->sw == 2 && f->layout == 0 &&
        (isa == ISA_AVX512 || isa == ISA_AVX512BW || (isa == ISA_AVX2 && f->pixel_scale && Cw <= 31)))
        a->Wh = (Wp + 1) / 2;
    const size_t sizes[8] = {
        (size_t)(N * Hp * Cw * Wp) * sizeof(uint64_t),                          /* packed words */
        f->pixel_scale ? (size_t)(N * Hp * Wp) * sizeof(float) : 0,            /* beta */
        (size_t)(N * f->rank * HWo) * sizeof(float),                           /* low-rank projections */
        strided && branches ? (size_t)(N * C * HWo) * sizeof(float) : 0,       /* x at the sampled pixels */
        rows ? (size_t)(C * P) * sizeof(float) : 0,                            /* layout 1: x as (C, P) */
        rows && f->h != f->x ? (size_t)(C * P) * sizeof(float) : 0,            /*           h as (C, P) */
        reads ? (size_t)(f->threads * (C + f->rank) * CHUNK) * sizeof(float) : 0, /* near copies */
        a->Wh ? (size_t)(f->threads * Wp) * sizeof(uint64_t) : 0};               /* split_columns' rows */
    size_t total = 0;
    for (int i = 0; i < 8; i++) total += (sizes[i] + 63) / 64 * 64;
    int cached;
    char *block = scratch_take(total + 64, &cached), *at = (char *)(((uintptr_t)block + 63) / 64 * 64);
    if (!block) return -1;
    uint64_t *act = carve(&at, sizes[0]);
    float *pscale = carve(&at, sizes[1]), *low = carve(&at, sizes[2]), *xs = carve(&at, sizes[3]);
    float *xt = carve(&at, sizes[4]), *ht = carve(&at, sizes[5]);
    f->near = carve(&at, sizes[6]);
    uint64_t *split = carve(&at, sizes[7]);
    f->low = low;
    f->xs = xs;
    f->O = a->O;
    a->act = act;
    a->pscale = pscale;
    if (rows) {
        transpose(f->x, P, C, xt, f->threads);
        if (ht) transpose(f->h, P, C, ht, f->threads);
        f->h = ht ? ht : xt;
        f->x = xt;
    }
    fused_prepare(f, a, act, pscale, xs, split);
    const int epilogue = f->bias || f->act_shift || f->residual || f->rank || f->sp_ptr; /* else alpha is all */
    run_conv(a, f->threads, epilogue ? f : NULL, f->out, (int)rows);
    scratch_give(block, cached);
    return 0;
}
