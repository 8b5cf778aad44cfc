/* The Python module binsr.deploy._bitkernels: the checked boundary between Python and the kernels.
 *
 * Every array crosses as a buffer object (binsr passes NumPy views of its CPU tensors). This file checks
 * each one itself: dtype (from the buffer's format and item size), number of dimensions, every extent,
 * C-contiguity, alignment to its item size, writability of outputs and that no output overlaps an input.
 * A wrong argument raises TypeError or ValueError naming it; no kernel ever sees it. Views are held only
 * for the length of a call (the exporter stays alive and unresizable meanwhile) and released before it
 * returns. A FusedLayer copies its tables (weight bits, scales, branch matrices, the sparse index, which it
 * validates) into memory it owns, so nothing it reads can change or disappear under a later call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include "bitkernels.h"

enum { K_F32 = 0, K_I32 = 1, K_U64 = 2 };
static const char *const KIND_NAMES[] = {"float32", "int32", "uint64"};
static const Py_ssize_t KIND_SIZES[] = {4, 4, 8};
#define ANY (-1)          /* an extent not fixed by the other arguments */
#define MAX_DIMS 4
#define MAX_THREADS 4096  /* one call never starts more OpenMP threads than this */
#define MAX_PADDING 4096
#define MAX_BYTES 1e15    /* scratch estimates above this are refused as too large, before any arithmetic wraps */

/* the buffer's element kind, or -1: native or little-endian float32, int32 or uint64, one item per entry */
static int kind_of(const Py_buffer *v) {
    const char *f = v->format ? v->format : "B";
    if (*f == '@' || *f == '=' || *f == '<') f++;
    if (!f[0] || f[1]) return -1;
    switch (f[0]) {
    case 'f': return v->itemsize == 4 ? K_F32 : -1;
    case 'i': case 'l': return v->itemsize == 4 ? K_I32 : -1;
    case 'L': case 'Q': return v->itemsize == 8 ? K_U64 : -1;
    default: return -1;
    }
}

static void shape_text(char *dst, size_t size, int ndim, const Py_ssize_t *shape) {
    size_t at = (size_t)snprintf(dst, size, "(");
    for (int i = 0; i < ndim && at < size; i++)
        at += (size_t)snprintf(dst + at, size - at, i ? ", %zd" : "%zd", shape[i]);
    if (at < size) snprintf(dst + at, size - at, ndim == 1 ? ",)" : ")");
}

/* obj's buffer, checked for its element kind, C-contiguity and alignment (an exception naming `name` and
 * view->obj NULL on failure) */
static int acquire(PyObject *obj, const char *name, int kind, int writable, Py_buffer *view) {
    view->obj = NULL;
    if (PyObject_GetBuffer(obj, view, PyBUF_STRIDES | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0) {
        PyErr_Format(PyExc_TypeError, "%s: expected a %sbuffer of %s (e.g. a NumPy view of a CPU tensor), got %s",
                     name, writable ? "writable " : "", KIND_NAMES[kind], Py_TYPE(obj)->tp_name);
        view->obj = NULL;
        return -1;
    }
    if (kind_of(view) != kind)
        PyErr_Format(PyExc_TypeError, "%s: expected %s, got a buffer of format '%s' with %zd-byte items", name,
                     KIND_NAMES[kind], view->format ? view->format : "B", view->itemsize);
    else if (view->ndim > MAX_DIMS)
        PyErr_Format(PyExc_ValueError, "%s: expected at most %d extents, got %d", name, MAX_DIMS, view->ndim);
    else if (!PyBuffer_IsContiguous(view, 'C'))
        PyErr_Format(PyExc_ValueError, "%s: expected a C-contiguous array, got strides that are not", name);
    else if ((uintptr_t)view->buf % (uintptr_t)KIND_SIZES[kind])
        PyErr_Format(PyExc_ValueError, "%s: data is not aligned to its %zd-byte items", name, KIND_SIZES[kind]);
    else
        return 0;
    PyBuffer_Release(view);
    view->obj = NULL;
    return -1;
}

/* `obj` as a C-contiguous, aligned array of `kind` with `ndim` extents; shape[i] >= 0 must match, ANY is
 * filled in. allow_empty: extents of 0 are allowed (else each must be >= 1). On failure: an exception
 * naming `name`, view->obj NULL. */
static int take(PyObject *obj, const char *name, int kind, int ndim, Py_ssize_t *shape, int writable, int allow_empty,
                Py_buffer *view) {
    if (acquire(obj, name, kind, writable, view) < 0) return -1;
    int fits = view->ndim == ndim;
    for (int i = 0; fits && i < ndim; i++)
        fits = (shape[i] == ANY || view->shape[i] == shape[i]) && (allow_empty || view->shape[i] >= 1);
    if (!fits) {
        char want[96], got[96];
        shape_text(want, sizeof want, ndim, shape);
        shape_text(got, sizeof got, view->ndim, view->shape);
        PyErr_Format(PyExc_ValueError, "%s: expected shape %s (-1: any, at least 1), got %s", name, want, got);
        PyBuffer_Release(view);
        view->obj = NULL;
        return -1;
    }
    for (int i = 0; i < ndim; i++) shape[i] = view->shape[i];
    return 0;
}

/* `obj` as C-contiguous rows: leading extents whose product is `rows`, then `cols` (a linear's (..., C)
 * tokens); optional: None gives an empty view */
static int take_rows(PyObject *obj, const char *name, int kind, Py_ssize_t rows, Py_ssize_t cols, int writable,
                     int optional, Py_buffer *view) {
    view->obj = NULL;
    view->buf = NULL;
    if (optional && obj == Py_None) return 0;
    if (acquire(obj, name, kind, writable, view) < 0) return -1;
    Py_ssize_t lead = 1;
    for (int i = 0; i + 1 < view->ndim; i++) lead *= view->shape[i];
    if (view->ndim < 2 || view->shape[view->ndim - 1] != cols || lead != rows) {
        char got[96];
        shape_text(got, sizeof got, view->ndim, view->shape);
        PyErr_Format(PyExc_ValueError, "%s: expected (..., %zd) with %zd rows in all, got %s", name, cols, rows, got);
        PyBuffer_Release(view);
        view->obj = NULL;
        return -1;
    }
    return 0;
}

/* as take(), but None gives an empty view (buf NULL) */
static int take_optional(PyObject *obj, const char *name, int kind, int ndim, Py_ssize_t *shape, int allow_empty,
                         Py_buffer *view) {
    if (obj == NULL || obj == Py_None) {
        view->obj = NULL;
        view->buf = NULL;
        view->len = 0;
        return 0;
    }
    return take(obj, name, kind, ndim, shape, 0, allow_empty, view);
}

static void release(Py_buffer *views, int count) {
    for (int i = 0; i < count; i++)
        if (views[i].obj) PyBuffer_Release(&views[i]);
}

static int overlaps(const Py_buffer *a, const Py_buffer *b) {
    if (!a->obj || !b->obj) return 0;
    const char *a0 = a->buf, *b0 = b->buf;
    return a0 < b0 + b->len && b0 < a0 + a->len;
}

static int check_threads(int threads) {
    if (threads >= 1 && threads <= MAX_THREADS) return 0;
    PyErr_Format(PyExc_ValueError, "threads: expected 1 to %d, got %d", MAX_THREADS, threads);
    return -1;
}

static int check_geometry(Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw) {
    if (sh < 1 || sw < 1 || sh > 1 << 16 || sw > 1 << 16) {
        PyErr_Format(PyExc_ValueError, "stride: expected 1 to 65536, got (%zd, %zd)", sh, sw);
        return -1;
    }
    if (ph < 0 || pw < 0 || ph > MAX_PADDING || pw > MAX_PADDING) {
        PyErr_Format(PyExc_ValueError, "padding: expected 0 to %d, got (%zd, %zd)", MAX_PADDING, ph, pw);
        return -1;
    }
    return 0;
}

static int64_t words_for(int64_t channels) { return (channels + 63) / 64; }

/* a dot product's K = C kh kw terms: below 2^24, its integers are exact in float32 */
static int check_dot_size(Py_ssize_t C, Py_ssize_t kh, Py_ssize_t kw) {
    if ((double)C * (double)kh * (double)kw < (double)(1 << 24)) return 0;
    PyErr_Format(PyExc_ValueError, "channels: %zd channels x %zd x %zd taps is 2^24 or more terms per output", C, kh, kw);
    return -1;
}

/* --- module-level functions --------------------------------------------------------------------------- */

static PyObject *py_pack_nchw(PyObject *self, PyObject *args) {
    PyObject *ox, *othr, *oout;
    Py_ssize_t ph, pw;
    int threads;
    if (!PyArg_ParseTuple(args, "OOO(nn)i:pack_nchw", &ox, &othr, &oout, &ph, &pw, &threads)) return NULL;
    if (check_geometry(1, 1, ph, pw) < 0 || check_threads(threads) < 0) return NULL;
    Py_buffer v[3];
    Py_ssize_t xs[4] = {ANY, ANY, ANY, ANY};
    if (take(ox, "x", K_F32, 4, xs, 0, 0, &v[0]) < 0) return NULL;
    Py_ssize_t ts[1] = {xs[1]}, os[4] = {xs[0], xs[2] + 2 * ph, words_for(xs[1]), xs[3] + 2 * pw};
    if (take_optional(othr, "threshold", K_F32, 1, ts, 0, &v[1]) < 0) { release(v, 1); return NULL; }
    if (take(oout, "out", K_U64, 4, os, 1, 0, &v[2]) < 0) { release(v, 2); return NULL; }
    if (overlaps(&v[2], &v[0]) || overlaps(&v[2], &v[1])) {
        release(v, 3);
        return PyErr_Format(PyExc_ValueError, "out: overlaps an input");
    }
    Py_BEGIN_ALLOW_THREADS
    run_pack_nchw(v[0].buf, v[1].buf, v[2].buf, xs[0], xs[1], xs[2], xs[3], ph, pw, threads);
    Py_END_ALLOW_THREADS
    release(v, 3);
    Py_RETURN_NONE;
}

static PyObject *py_pack_rows(PyObject *self, PyObject *args) {
    PyObject *ox, *othr, *oout;
    int threads;
    if (!PyArg_ParseTuple(args, "OOOi:pack_rows", &ox, &othr, &oout, &threads)) return NULL;
    if (check_threads(threads) < 0) return NULL;
    Py_buffer v[3];
    Py_ssize_t xs[2] = {ANY, ANY};
    if (take(ox, "x", K_F32, 2, xs, 0, 0, &v[0]) < 0) return NULL;
    Py_ssize_t ts[1] = {xs[1]}, os[2] = {words_for(xs[1]), xs[0]};
    if (take_optional(othr, "threshold", K_F32, 1, ts, 0, &v[1]) < 0) { release(v, 1); return NULL; }
    if (take(oout, "out", K_U64, 2, os, 1, 0, &v[2]) < 0) { release(v, 2); return NULL; }
    if (overlaps(&v[2], &v[0]) || overlaps(&v[2], &v[1])) {
        release(v, 3);
        return PyErr_Format(PyExc_ValueError, "out: overlaps an input");
    }
    Py_BEGIN_ALLOW_THREADS
    run_pack_rows(v[0].buf, v[1].buf, v[2].buf, xs[0], xs[1], threads);
    Py_END_ALLOW_THREADS
    release(v, 3);
    Py_RETURN_NONE;
}

static PyObject *py_conv(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keys[] = {"act", "weights", "channels", "out", "stride", "padding", "threads", "alpha", "scale", NULL};
    PyObject *oact, *owts, *oout, *oalpha = Py_None, *oscale = Py_None;
    Py_ssize_t C, sh, sw, ph, pw;
    int threads;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOnO(nn)(nn)i|$OO:conv", keys, &oact, &owts, &C, &oout, &sh, &sw,
                                     &ph, &pw, &threads, &oalpha, &oscale))
        return NULL;
    if (check_geometry(sh, sw, ph, pw) < 0 || check_threads(threads) < 0) return NULL;
    if (C < 1) return PyErr_Format(PyExc_ValueError, "channels: expected at least 1, got %zd", C);
    Py_buffer v[5] = {{0}};
    int32_t *tables = NULL;
    Py_ssize_t as[4] = {ANY, ANY, words_for(C), ANY}, ws[4] = {ANY, ANY, ANY, words_for(C)};
    if (take(oact, "act", K_U64, 4, as, 0, 0, &v[0]) < 0) return NULL;
    if (take(owts, "weights", K_U64, 4, ws, 0, 0, &v[1]) < 0) goto fail;
    const Py_ssize_t N = as[0], Hp = as[1], Wp = as[3], O = ws[0], kh = ws[1], kw = ws[2];
    if (Hp < kh || Wp < kw || Hp <= 2 * ph || Wp <= 2 * pw) {
        PyErr_Format(PyExc_ValueError, "act: padded input %zd x %zd is smaller than the kernel %zd x %zd or the "
                     "padding (%zd, %zd)", Hp, Wp, kh, kw, ph, pw);
        goto fail;
    }
    if (check_dot_size(C, kh, kw) < 0) goto fail;
    Py_ssize_t osz[4] = {N, O, (Hp - kh) / sh + 1, (Wp - kw) / sw + 1}, al[1] = {O}, ss[3] = {N, Hp, Wp};
    if (take(oout, "out", K_F32, 4, osz, 1, 0, &v[2]) < 0) goto fail;
    if (take_optional(oalpha, "alpha", K_F32, 1, al, 0, &v[3]) < 0) goto fail;
    if (take_optional(oscale, "scale", K_F32, 3, ss, 0, &v[4]) < 0) goto fail;
    for (int i = 0; i < 5; i++)
        if (i != 2 && overlaps(&v[2], &v[i])) {
            PyErr_SetString(PyExc_ValueError, "out: overlaps an input");
            goto fail;
        }
    conv_args a = {v[0].buf, v[1].buf, v[3].buf, v[4].buf, NULL, NULL,
                   N, C, words_for(C), O, Hp, Wp, osz[2], osz[3], kh, kw, sh, sw, ph, pw, 0};
    if (!v[4].obj && (ph || pw)) { /* the zero-padding corrections, from the weights */
        tables = malloc(border_tables_size(&a));
        if (!tables) { PyErr_NoMemory(); goto fail; }
        border_tables(&a, tables, tables + O * kh * kw);
    }
    Py_BEGIN_ALLOW_THREADS
    run_conv(&a, threads, NULL, NULL, v[2].buf, 0);
    Py_END_ALLOW_THREADS
    free(tables);
    release(v, 5);
    Py_RETURN_NONE;
fail:
    free(tables);
    release(v, 5);
    return NULL;
}

static PyObject *py_peak(PyObject *self, PyObject *args) {
    Py_ssize_t iterations;
    if (!PyArg_ParseTuple(args, "n:peak", &iterations)) return NULL;
    if (iterations < 1 || iterations > (Py_ssize_t)1 << 40)
        return PyErr_Format(PyExc_ValueError, "iterations: expected 1 to 2**40, got %zd", iterations);
    double fp, binary;
    Py_BEGIN_ALLOW_THREADS
    fp = peak_fp32(iterations);
    binary = peak_binary(iterations);
    Py_END_ALLOW_THREADS
    return Py_BuildValue("(dd)", fp, binary);
}

static PyObject *py_isa(PyObject *self, PyObject *noargs) {
    return PyUnicode_FromString(binsr_isa_names[binsr_isa_used]);
}

static PyObject *py_isas(PyObject *self, PyObject *noargs) {
    PyObject *names = PyList_New(0);
    for (int i = binsr_isa_best; i >= 0 && names; i--) {
        if (!binsr_isa_supported(i)) continue;
        PyObject *s = PyUnicode_FromString(binsr_isa_names[i]);
        if (!s || PyList_Append(names, s) < 0) { Py_XDECREF(s); Py_DECREF(names); return NULL; }
        Py_DECREF(s);
    }
    return names;
}

static PyObject *py_set_isa(PyObject *self, PyObject *args) {
    const char *name;
    if (!PyArg_ParseTuple(args, "s:set_isa", &name)) return NULL;
    for (int i = 0; i < ISA_COUNT; i++)
        if (strcmp(name, binsr_isa_names[i]) == 0 && binsr_isa_supported(i)) { binsr_isa_used = i; Py_RETURN_NONE; }
    return PyErr_Format(PyExc_ValueError, "instruction set %s is not available on this CPU", name);
}

/* --- FusedLayer: a whole packed layer, prepared once ------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    conv_args a;   /* geometry and tables; act, pscale and out are set per call */
    fused_args f;  /* tables and flags; x, h, out and threads are set per call */
    Py_ssize_t in_shape[MAX_DIMS], out_shape[MAX_DIMS];
    int ndim;
    void *tables;  /* owned: one block holding a copy of every table */
} FusedLayer;

/* one table argument: where it comes from, what it must be, and where its copy goes */
typedef struct {
    PyObject *obj;
    const char *name;
    int kind, ndim, allow_empty;
    Py_ssize_t shape[MAX_DIMS];
    Py_buffer view;
} table_arg;

static int validate_sparse(const int32_t *rows, const int32_t *cols, int64_t O, int64_t k, int64_t C) {
    if (rows[0] != 0 || rows[O] != k) {
        PyErr_Format(PyExc_ValueError, "sparse_rows: must start at 0 and end at the %lld entries",
                     (long long)k);
        return -1;
    }
    for (int64_t o = 0; o < O; o++)
        if (rows[o + 1] < rows[o]) {
            PyErr_Format(PyExc_ValueError, "sparse_rows: decreases at row %lld", (long long)o);
            return -1;
        }
    for (int64_t j = 0; j < k; j++)
        if (cols[j] < 0 || cols[j] >= C) {
            PyErr_Format(PyExc_ValueError, "sparse_cols: entry %lld is %d, outside 0 .. %lld", (long long)j, cols[j],
                         (long long)C - 1);
            return -1;
        }
    return 0;
}

static void fused_dealloc(FusedLayer *self) {
    free(self->tables);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

enum { T_WTS, T_ALPHA, T_THR, T_BIAS, T_SHIFT, T_SLOPE, T_ABIAS, T_DOWN, T_UP, T_ROWS, T_COLS, T_VALS, T_NORM_W,
       T_NORM_B, T_COUNT };

static int fused_init(FusedLayer *self, PyObject *args, PyObject *kwargs) {
    static char *keys[] = {"input_shape", "weights", "channels", "alpha", "threshold", "pixel_scale",
                           "stride", "padding", "bias", "act_shift", "act_slope", "act_bias", "residual", "down",
                           "up", "sparse_rows", "sparse_cols", "sparse_values", "norm_groups", "norm_weight",
                           "norm_bias", "eps", "silu", "split", NULL};
    PyObject *shape_obj, *o[T_COUNT] = {NULL};
    Py_ssize_t C, sh = 1, sw = 1, ph = 0, pw = 0, groups = 0, split = 0;
    int pixel_scale = 0, residual = 0, silu = 0;
    double eps = 1e-5;
    for (int i = 1; i < T_COUNT; i++) o[i] = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!On|$OOp(nn)(nn)OOOOpOOOOOnOOdpn:FusedLayer", keys, &PyTuple_Type,
                                     &shape_obj, &o[T_WTS], &C, &o[T_ALPHA], &o[T_THR], &pixel_scale, &sh,
                                     &sw, &ph, &pw, &o[T_BIAS], &o[T_SHIFT], &o[T_SLOPE], &o[T_ABIAS], &residual,
                                     &o[T_DOWN], &o[T_UP], &o[T_ROWS], &o[T_COLS], &o[T_VALS], &groups,
                                     &o[T_NORM_W], &o[T_NORM_B], &eps, &silu, &split))
        return -1;
    if (self->tables) {
        PyErr_SetString(PyExc_TypeError, "FusedLayer: already initialised");
        return -1;
    }
    const Py_ssize_t ndim = PyTuple_GET_SIZE(shape_obj);
    if (ndim != 2 && ndim != 4) {
        PyErr_SetString(PyExc_ValueError, "input_shape: expected (N, C, H, W) for a conv or (P, C) for a linear");
        return -1;
    }
    Py_ssize_t in[MAX_DIMS];
    for (Py_ssize_t i = 0; i < ndim; i++) {
        in[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(shape_obj, i));
        if (in[i] == -1 && PyErr_Occurred()) return -1;
        if (in[i] < 1) {
            PyErr_SetString(PyExc_ValueError, "input_shape: every extent must be at least 1");
            return -1;
        }
    }
    const int conv = ndim == 4;
    if (in[1] != C || C < 1) {
        PyErr_Format(PyExc_ValueError, "input_shape: has %zd channels, the layer %zd", in[1], C);
        return -1;
    }
    if (check_geometry(sh, sw, ph, pw) < 0) return -1;
    if (!conv && (sh != 1 || sw != 1 || ph || pw)) {
        PyErr_SetString(PyExc_ValueError, "stride, padding: a linear layer has neither");
        return -1;
    }
    /* weights first: they fix O, kh, kw */
    table_arg t[T_COUNT];
    memset(t, 0, sizeof t);
    const int64_t Cw = words_for(C);
    t[T_WTS] = (table_arg){o[T_WTS], "weights", K_U64, conv ? 4 : 2, 0, {ANY, ANY, ANY, ANY}};
    if (conv) t[T_WTS].shape[3] = Cw; else t[T_WTS].shape[1] = Cw;
    if (take(t[T_WTS].obj, "weights", K_U64, t[T_WTS].ndim, t[T_WTS].shape, 0, 0, &t[T_WTS].view) < 0) return -1;
    const Py_ssize_t O = t[T_WTS].shape[0], kh = conv ? t[T_WTS].shape[1] : 1, kw = conv ? t[T_WTS].shape[2] : 1;
    const Py_ssize_t N = conv ? in[0] : 1, H = conv ? in[2] : 1, W = conv ? in[3] : in[0];
    const Py_ssize_t Hp = H + 2 * ph, Wp = W + 2 * pw;
    int status = -1;
    if (Hp < kh || Wp < kw) {
        PyErr_Format(PyExc_ValueError, "input_shape: padded input %zd x %zd is smaller than the kernel %zd x %zd",
                     Hp, Wp, kh, kw);
        goto done;
    }
    const Py_ssize_t Ho = (Hp - kh) / sh + 1, Wo = (Wp - kw) / sw + 1, units = conv ? N : W;
    const double scratch = 8.0 * (double)N * Hp * Cw * Wp + 8.0 * (double)N * (double)(C + 64) * Ho * Wo +
                           8.0 * (double)N * O * Ho * Wo + 4.0 * (double)MAX_THREADS * (C + 64) * CHUNK;
    if (scratch > MAX_BYTES || (double)O * kh * kw * Cw * 8.0 > MAX_BYTES) {
        PyErr_SetString(PyExc_ValueError, "input_shape: the layer would need more memory than any machine has");
        goto done;
    }
    /* the other tables: each optional, shapes fixed by the weights and the input */
    const Py_ssize_t any = ANY;
    t[T_ALPHA] = (table_arg){o[T_ALPHA], "alpha", K_F32, 1, 0, {O}};
    t[T_THR] = (table_arg){o[T_THR], "threshold", K_F32, 1, 0, {C}};
    t[T_BIAS] = (table_arg){o[T_BIAS], "bias", K_F32, 1, 0, {O}};
    t[T_SHIFT] = (table_arg){o[T_SHIFT], "act_shift", K_F32, 2, 0, {any, O}};
    t[T_SLOPE] = (table_arg){o[T_SLOPE], "act_slope", K_F32, 2, 0, {any, O}};
    t[T_ABIAS] = (table_arg){o[T_ABIAS], "act_bias", K_F32, 2, 0, {any, O}};
    t[T_DOWN] = (table_arg){o[T_DOWN], "down", K_F32, 2, 0, {any, C}};
    t[T_UP] = (table_arg){o[T_UP], "up", K_F32, 2, 0, {O, any}};
    t[T_ROWS] = (table_arg){o[T_ROWS], "sparse_rows", K_I32, 1, 0, {O + 1}};
    t[T_COLS] = (table_arg){o[T_COLS], "sparse_cols", K_I32, 1, 1, {any}};
    t[T_VALS] = (table_arg){o[T_VALS], "sparse_values", K_F32, 1, 1, {any}};
    t[T_NORM_W] = (table_arg){o[T_NORM_W], "norm_weight", K_F32, 1, 0, {C}};
    t[T_NORM_B] = (table_arg){o[T_NORM_B], "norm_bias", K_F32, 1, 0, {C}};
    for (int i = 1; i < T_COUNT; i++)
        if (take_optional(t[i].obj, t[i].name, t[i].kind, t[i].ndim, t[i].shape, t[i].allow_empty, &t[i].view) < 0)
            goto done;
#define HAS(i) (t[i].view.obj != NULL)
    if (HAS(T_SHIFT) != HAS(T_SLOPE) || HAS(T_SHIFT) != HAS(T_ABIAS)) {
        PyErr_SetString(PyExc_ValueError, "act_shift, act_slope, act_bias: give all three or none");
        goto done;
    }
    const Py_ssize_t act_rows = HAS(T_SHIFT) ? t[T_SHIFT].shape[0] : 0;
    if (act_rows && (t[T_SLOPE].shape[0] != act_rows || t[T_ABIAS].shape[0] != act_rows || units % act_rows)) {
        PyErr_Format(PyExc_ValueError, "act_shift, act_slope, act_bias: need the same number of rows, one that "
                     "divides the %zd %s", units, conv ? "samples" : "tokens");
        goto done;
    }
    if (HAS(T_DOWN) != HAS(T_UP) || (HAS(T_DOWN) && t[T_DOWN].shape[0] != t[T_UP].shape[1])) {
        PyErr_SetString(PyExc_ValueError, "down, up: give both, (rank, C) and (O, rank), or neither");
        goto done;
    }
    if (HAS(T_ROWS) != HAS(T_COLS) || HAS(T_ROWS) != HAS(T_VALS) ||
        (HAS(T_COLS) && t[T_COLS].shape[0] != t[T_VALS].shape[0])) {
        PyErr_SetString(PyExc_ValueError, "sparse_rows, sparse_cols, sparse_values: give all three or none, "
                        "columns and values of one length");
        goto done;
    }
    if ((HAS(T_DOWN) || HAS(T_ROWS)) && (Ho != (H - 1) / sh + 1 || Wo != (W - 1) / sw + 1)) {
        PyErr_Format(PyExc_ValueError, "down, up, sparse_*: the 1x1 branches give a %zd x %zd output (stride %zd, %zd), "
                     "the conv %zd x %zd: its padding must be kernel // 2", (H - 1) / sh + 1, (W - 1) / sw + 1, sh, sw,
                     Ho, Wo);
        goto done;
    }
    if (check_dot_size(C, kh, kw) < 0) goto done;
    if (groups < 0 || (groups && (C % groups || !HAS(T_NORM_W) || !HAS(T_NORM_B))) || (!groups && (HAS(T_NORM_W) ||
        HAS(T_NORM_B))) || !(eps > 0.0 && eps < 1.0)) {
        PyErr_Format(PyExc_ValueError, "norm_groups, norm_weight, norm_bias, eps: a GroupNorm needs groups that divide "
                     "the %zd channels, both (C,) tables and 0 < eps < 1", C);
        goto done;
    }
    if (split < 0 || split >= C || (split && split % 64)) {
        PyErr_Format(PyExc_ValueError, "split: the first input's channels, a multiple of 64 below %zd (0: one input)", C);
        goto done;
    }
    if ((groups || silu || split) && (!conv || HAS(T_THR))) {
        PyErr_SetString(PyExc_ValueError, "norm_groups, silu, split: an input transform is for convs without a "
                        "threshold (its output is the layer's input)");
        goto done;
    }
    if (residual && (O != C || Ho != H || Wo != W)) {
        PyErr_SetString(PyExc_ValueError, "residual: the output shape must equal the input shape");
        goto done;
    }
    /* one block holds a 64-byte aligned copy of each table, then the zero-padding corrections */
    conv_args geometry = {NULL, NULL, NULL, NULL, NULL, NULL, N, C, Cw, O, Hp, Wp, Ho, Wo, kh, kw, sh, sw, ph, pw, 0};
    const int corrected = !pixel_scale && (ph || pw);
    size_t total = 0, offsets[T_COUNT];
    for (int i = 0; i < T_COUNT; i++) {
        offsets[i] = total;
        total += ((size_t)t[i].view.len + 63) / 64 * 64;
    }
    const size_t border_at = total;
    if (corrected) total += border_tables_size(&geometry);
    char *block = NULL;
    if (posix_memalign((void **)&block, 64, total ? total : 64)) {
        PyErr_NoMemory();
        goto done;
    }
    for (int i = 0; i < T_COUNT; i++)
        if (HAS(i)) memcpy(block + offsets[i], t[i].view.buf, (size_t)t[i].view.len);
#define TABLE(i, type) (HAS(i) ? (const type *)(block + offsets[i]) : NULL)
    const int64_t k = HAS(T_COLS) ? t[T_COLS].shape[0] : 0;
    if (HAS(T_ROWS) && validate_sparse(TABLE(T_ROWS, int32_t), TABLE(T_COLS, int32_t), O, k, C) < 0) {
        free(block);
        goto done;
    }
    self->tables = block;
    geometry.wts = TABLE(T_WTS, uint64_t);
    geometry.alpha = TABLE(T_ALPHA, float);
    if (corrected) {
        int32_t *corr = (int32_t *)(block + border_at);
        border_tables(&geometry, corr, corr + O * kh * kw);
    }
    self->a = geometry;
    fused_args f = {0};
    f.layout = conv ? 0 : 1, f.N = N, f.C = C, f.H = H, f.W = W;
    f.thr = TABLE(T_THR, float), f.pixel_scale = pixel_scale, f.bias = TABLE(T_BIAS, float);
    f.act_shift = TABLE(T_SHIFT, float), f.act_slope = TABLE(T_SLOPE, float), f.act_bias = TABLE(T_ABIAS, float);
    f.act_rows = act_rows, f.residual = residual;
    f.down = TABLE(T_DOWN, float), f.up = TABLE(T_UP, float), f.rank = HAS(T_DOWN) ? t[T_DOWN].shape[0] : 0;
    f.sp_ptr = TABLE(T_ROWS, int32_t), f.sp_col = TABLE(T_COLS, int32_t), f.sp_val = TABLE(T_VALS, float);
    f.O = O;
    f.norm_groups = groups, f.norm_weight = TABLE(T_NORM_W, float), f.norm_bias = TABLE(T_NORM_B, float);
    f.eps = (float)eps, f.silu = silu, f.C1 = split ? split : C;
    self->f = f;
    self->ndim = (int)ndim;
    for (int i = 0; i < ndim; i++) self->in_shape[i] = in[i];
    if (conv) {
        const Py_ssize_t out[4] = {N, O, Ho, Wo};
        memcpy(self->out_shape, out, sizeof out);
    } else {
        self->out_shape[0] = W;
        self->out_shape[1] = O;
    }
    status = 0;
#undef TABLE
#undef HAS
done:
    for (int i = 0; i < T_COUNT; i++)
        if (t[i].view.obj) PyBuffer_Release(&t[i].view);
    return status;
}

static PyObject *fused_call(FusedLayer *self, PyObject *args, PyObject *kwargs) {
    static char *keys[] = {"x", "h", "out", "threads", "x2", "mul", "shift", "add", NULL};
    PyObject *ox, *oh, *oout, *ox2 = Py_None, *omul = Py_None, *oshift = Py_None, *oadd = Py_None;
    int threads;
    if (!self->tables) return PyErr_Format(PyExc_TypeError, "FusedLayer: not initialised");
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOi|$OOOO:FusedLayer", keys, &ox, &oh, &oout, &threads, &ox2,
                                     &omul, &oshift, &oadd))
        return NULL;
    if (check_threads(threads) < 0) return NULL;
    const fused_args *t = &self->f;
    const int two = t->C1 != t->C, transform = t->norm_groups || t->silu || two;
    Py_buffer v[7] = {{0}};
    Py_ssize_t xs[MAX_DIMS], hs[MAX_DIMS], os[MAX_DIMS];
    memcpy(xs, self->in_shape, sizeof xs);
    memcpy(hs, self->in_shape, sizeof hs);
    memcpy(os, self->out_shape, sizeof os);
    if (self->ndim == 2) { /* a linear: tokens with any leading extents */
        if (take_rows(ox, "x", K_F32, xs[0], xs[1], 0, 0, &v[0]) < 0) return NULL;
        if (take_rows(oh, "h", K_F32, xs[0], xs[1], 0, 1, &v[1]) < 0) goto fail;
        if (take_rows(oout, "out", K_F32, os[0], os[1], 1, 0, &v[2]) < 0) goto fail;
    } else {
        if (two) xs[1] = hs[1] = t->C1;
        if (take(ox, "x", K_F32, self->ndim, xs, 0, 0, &v[0]) < 0) return NULL;
        if (take_optional(oh, "h", K_F32, self->ndim, hs, 0, &v[1]) < 0) goto fail;
        if (take(oout, "out", K_F32, self->ndim, os, 1, 0, &v[2]) < 0) goto fail;
        Py_ssize_t x2s[4] = {self->in_shape[0], t->C - t->C1, self->in_shape[2], self->in_shape[3]};
        Py_ssize_t ms[2] = {t->N, t->C}, as[4];
        memcpy(as, self->out_shape, sizeof as);
        if (two ? ox2 == Py_None : ox2 != Py_None) {
            PyErr_Format(PyExc_ValueError, "x2: %s", two ? "required: the layer reads two inputs" : "this layer has one input");
            goto fail;
        }
        if (two && take(ox2, "x2", K_F32, 4, x2s, 0, 0, &v[3]) < 0) goto fail;
        if ((omul != Py_None || oshift != Py_None) && !t->norm_groups) {
            PyErr_SetString(PyExc_ValueError, "mul, shift: only after a GroupNorm");
            goto fail;
        }
        if (take_optional(omul, "mul", K_F32, 2, ms, 0, &v[4]) < 0) goto fail;
        ms[0] = t->N, ms[1] = t->C;
        if (take_optional(oshift, "shift", K_F32, 2, ms, 0, &v[5]) < 0) goto fail;
        if (take_optional(oadd, "add", K_F32, 4, as, 0, &v[6]) < 0) goto fail;
    }
    if (self->ndim == 2 && (ox2 != Py_None || omul != Py_None || oshift != Py_None || oadd != Py_None)) {
        PyErr_SetString(PyExc_ValueError, "x2, mul, shift, add: not for a linear layer");
        goto fail;
    }
    if (transform && v[1].obj) {
        PyErr_SetString(PyExc_ValueError, "h: a layer with an input transform packs its transformed input");
        goto fail;
    }
    for (int i = 0; i < 7; i++)
        if (i != 2 && overlaps(&v[2], &v[i])) {
            PyErr_SetString(PyExc_ValueError, "out: overlaps an input");
            goto fail;
        }
    conv_args a = self->a;
    fused_args f = self->f;
    f.x = v[0].buf;
    f.h = v[1].obj ? v[1].buf : v[0].buf;
    f.out = v[2].buf;
    f.x2 = v[3].obj ? v[3].buf : NULL;
    f.mul = v[4].obj ? v[4].buf : NULL;
    f.shift = v[5].obj ? v[5].buf : NULL;
    f.add = v[6].obj ? v[6].buf : NULL;
    f.threads = threads;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = run_fused(&f, &a);
    Py_END_ALLOW_THREADS
    release(v, 7);
    if (status < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
fail:
    release(v, 7);
    return NULL;
}

static PyObject *shape_tuple(const Py_ssize_t *shape, int ndim) {
    PyObject *t = PyTuple_New(ndim);
    for (int i = 0; t && i < ndim; i++) {
        PyObject *n = PyLong_FromSsize_t(shape[i]);
        if (!n) { Py_DECREF(t); return NULL; }
        PyTuple_SET_ITEM(t, i, n);
    }
    return t;
}

static PyObject *fused_in_shape(FusedLayer *self, void *closure) { return shape_tuple(self->in_shape, self->ndim); }
static PyObject *fused_out_shape(FusedLayer *self, void *closure) { return shape_tuple(self->out_shape, self->ndim); }

static PyGetSetDef fused_getset[] = {
    {"in_shape", (getter)fused_in_shape, NULL, "the input shape the layer was prepared for", NULL},
    {"out_shape", (getter)fused_out_shape, NULL, "the output shape it writes", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject FusedLayerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "binsr.deploy._bitkernels.FusedLayer",
    .tp_doc = "FusedLayer(input_shape, weights, channels, *, alpha, threshold, pixel_scale, stride, "
              "padding, bias, act_shift, act_slope, act_bias, residual, down, up, sparse_rows, sparse_cols, "
              "sparse_values)\n\nA whole packed layer prepared for one input shape (copies of its tables, checked); "
              "call(x, h, out, threads) runs it: sign-pack h (None: x), XNOR-popcount, alpha, beta, then bias, "
              "RPReLU, residual, low-rank and sparse branches.",
    .tp_basicsize = sizeof(FusedLayer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)fused_init,
    .tp_dealloc = (destructor)fused_dealloc,
    .tp_call = (ternaryfunc)fused_call,
    .tp_getset = fused_getset,
};

static PyObject *py_set_transpose_packing(PyObject *self, PyObject *args) {
    int on;
    if (!PyArg_ParseTuple(args, "p:set_transpose_packing", &on)) return NULL;
    if (on && !binsr_gfni_supported())
        return PyErr_Format(PyExc_ValueError, "this CPU has no AVX-512 VBMI and GFNI for transpose packing");
    binsr_has_gfni = on;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"pack_nchw", py_pack_nchw, METH_VARARGS,
     "pack_nchw(x, threshold, out, padding, threads): sign-pack (N, C, H, W) float32 into padded (N, Hp, Cw, Wp) words"},
    {"pack_rows", py_pack_rows, METH_VARARGS,
     "pack_rows(x, threshold, out, threads): sign-pack (P, C) float32 rows into (Cw, P) words"},
    {"conv", (PyCFunction)(void (*)(void))py_conv, METH_VARARGS | METH_KEYWORDS,
     "conv(act, weights, channels, out, stride, padding, threads, *, alpha, scale): XNOR-popcount conv"},
    {"peak", py_peak, METH_VARARGS, "peak(iterations): (fp32, binary) multiply-accumulates per second of one thread"},
    {"isa", py_isa, METH_NOARGS, "the instruction set the kernels use"},
    {"set_transpose_packing", py_set_transpose_packing, METH_VARARGS,
     "set_transpose_packing(on): AVX-512 sign packing by GFNI bit-matrix transposes (default where the CPU has them)"},
    {"isas", py_isas, METH_NOARGS, "instruction sets this CPU supports, fastest first"},
    {"set_isa", py_set_isa, METH_VARARGS, "use a (slower) supported instruction set, e.g. for tests"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_bitkernels", .m_doc = "XNOR-popcount CPU kernels", .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC PyInit__bitkernels(void) {
    binsr_detect_isa();
    if (PyType_Ready(&FusedLayerType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&FusedLayerType);
    if (PyModule_AddObject(m, "FusedLayer", (PyObject *)&FusedLayerType) < 0) {
        Py_DECREF(&FusedLayerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
