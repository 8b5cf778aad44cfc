/* Zero padding in unscaled layers. A padded input position holds the all-zero word (+1 in every channel), so
 * a tap that falls into the padding adds C - 2 popcount(w) = sum_c sign(w) where the float conv adds 0. The
 * tiles subtract, per output, the sum of those tap sums over the taps that fell into the padding.
 *
 * Which taps those are depends only on how many kernel rows are cut at the top and bottom (0 .. ph each) and
 * columns at the left and right (0 .. pw each), so per output channel the corrections of every border class
 * are a small table: ctab[o][top (ph+1) + bottom][left (pw+1) + right], 16 entries per row class while
 * (pw+1)^2 <= 16. A tile finds its lanes' column classes once and gathers each channel's corrections from
 * its row with one permute. (Scaled layers need none: their per-pixel scale is 0 on the padding.) */
#include "bitkernels.h"

int border_classes_fit(const conv_args *a) { return a->ph <= 3 && a->pw <= 3; }

size_t border_tables_size(const conv_args *a) {
    const size_t taps = (size_t)(a->O * a->kh * a->kw), rows = (size_t)((a->ph + 1) * (a->ph + 1));
    return sizeof(int32_t) * (taps + (border_classes_fit(a) ? (size_t)a->O * rows * 16 : 0));
}

void border_tables(conv_args *a, int32_t *corr, int32_t *ctab) {
    const int64_t taps = a->kh * a->kw, Cw = a->Cw;
    for (int64_t o = 0; o < a->O; o++)
        for (int64_t t = 0; t < taps; t++) {
            int64_t pop = 0;
            for (int64_t g = 0; g < Cw; g++) pop += __builtin_popcountll(a->wts[(o * taps + t) * Cw + g]);
            corr[o * taps + t] = (int32_t)(a->C - 2 * pop); /* (bits past the last channel are 0: +1, not counted) */
        }
    a->corr = corr;
    a->ctab = NULL;
    if (!border_classes_fit(a)) return;
    const int64_t ph = a->ph, pw = a->pw, nrc = (ph + 1) * (ph + 1);
    for (int64_t o = 0; o < a->O; o++)
        for (int64_t top = 0; top <= ph; top++)
            for (int64_t bottom = 0; bottom <= ph; bottom++)
                for (int64_t cls = 0; cls < 16; cls++) {
                    const int64_t left = cls / (pw + 1), right = cls % (pw + 1);
                    int32_t sum = 0;
                    if (left <= pw)
                        for (int64_t ky = 0; ky < a->kh; ky++)
                            for (int64_t kx = 0; kx < a->kw; kx++)
                                if (ky < top || ky >= a->kh - bottom || kx < left || kx >= a->kw - right)
                                    sum += corr[o * taps + ky * a->kw + kx];
                    ctab[(o * nrc + top * (ph + 1) + bottom) * 16 + cls] = sum;
                }
    a->ctab = ctab;
}
