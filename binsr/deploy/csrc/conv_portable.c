/* The portable path: one output at a time, the reference every vector path equals bit for bit.
 *
 * Unscaled layers: the exact integer sum_taps (C - 2 popcount) over the taps inside the image (padded taps
 * skipped), then one rounding: float(dot) * alpha. Scaled layers (BiMaCoSR's per-pixel beta s): per tap in
 * (ky, kx) order, including the padded ones (their s is 0), acc = fma(popcount - floor(C/2), s, acc) and
 * bsum += s; the output is fma(-2, acc, (C mod 2) bsum) * alpha = alpha sum_taps s (C - 2 popcount): the
 * vector tiles do the same float operations in the same order on each of their lanes.
 * The POPCNT build is the same code compiled with the popcnt instruction. */
#include <math.h>
#include "bitkernels.h"

static ALWAYS_INLINE float output_value(const conv_args *a, int64_t n, int64_t o, int64_t oy, int64_t ox) {
    const int64_t Cw = a->Cw, Wp = a->Wp;
    int64_t dot = 0;
    float acc = 0.0f, bsum = 0.0f;
    for (int64_t ky = 0; ky < a->kh; ky++) {
        const int row_inside = tap_row_valid(a, oy, ky);
        if (!row_inside && !a->pscale) continue;
        const int64_t iy = oy * a->sh + ky;
        const uint64_t *row = act_row(a, n, iy);
        for (int64_t kx = 0; kx < a->kw; kx++) {
            const int inside = row_inside && tap_col_valid(a, ox, kx);
            if (!inside && !a->pscale) continue;
            const int64_t ix = column(a, ox * a->sw + kx);
            const uint64_t *w = a->wts + ((o * a->kh + ky) * a->kw + kx) * Cw;
            int64_t pop = 0;
            for (int64_t g = 0; g < Cw; g++) pop += __builtin_popcountll(row[g * Wp + ix] ^ w[g]);
            if (a->pscale) {
                const float s = scale_row(a, n, iy)[ix];
                bsum += s;
                acc = fmaf((float)(pop - a->C / 2), s, acc);
            } else
                dot += a->C - 2 * pop;
        }
    }
    const float v = a->pscale ? fmaf(-2.0f, acc, (float)(a->C % 2) * bsum) : (float)dot;
    return a->alpha ? v * a->alpha[o] : v;
}

#define DEFINE_PORTABLE(NAME, ATTR)                                                                          \
    ATTR CONV_ROW(NAME) {                                                                                    \
        for (int64_t o = o0; o < o1; o++)                                                                    \
            for (int64_t ox = x0; ox < x1; ox++) tile[(o - o0) * CHUNK + ox - x0] = output_value(a, n, o, oy, ox); \
    }

DEFINE_PORTABLE(conv_portable, )
#ifdef BINSR_X86
DEFINE_PORTABLE(conv_popcnt, __attribute__((target("popcnt"))))
#endif
