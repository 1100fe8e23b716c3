/* The int4 matrix-vector product for decode (x has 1 to 4 rows), on the calling thread.
 *
 * Single-threaded on purpose: model/layers/linear.py uses it when torch runs on one thread. Splitting
 * a call over threads of our own was tried (bench/model_cpu.py, docs/benchmarks.md): a Python thread
 * cost ~90 us per hand-off, and spinning pthreads fought torch's own OpenMP workers for the cores
 * (decode 5.6 tok/s against torch's kernel's 13.0 at 2 threads).
 *
 * Called from model/native/__init__.py with raw addresses of contiguous CPU tensors the caller keeps
 * alive; the GIL is released while it runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "int4_layout.h"

#ifdef NATIVE_X86
/* Decode: y[m][n] = sum_k x[m][k] * ((q - 8) * scale + zero) for M <= 4 rows of x, straight from the
 * packed int4 layout (int4_layout.h). torch's kernel forms every weight, (q - 8) * scale + zero, before its
 * product with x; here the scale and zero come out of the sum over each group:
 *     sum_k x_k * w_k = scale * (sum_k x_k * q_k - 8 * xsum) + zero * xsum,   xsum = sum_k x_k,
 * so the inner loop is one FMA per weight and the scales are read once per group, and the nibbles
 * become floats through a 16-entry table (vpermps). Blocks of 64 outputs first .. first + count. */
#ifndef SCALE_PREFETCH_GROUPS
#define SCALE_PREFETCH_GROUPS 4
#endif
#ifndef WEIGHT_PREFETCH_K
#define WEIGHT_PREFETCH_K 128
#endif
AVX512_BF16 static inline void gemv_int4_block(const uint8_t *packed, const uint16_t *scales_and_zeros,
                                               const float *x, const float *xsum, float *y, int m_rows,
                                               int64_t in_features, int64_t group, int64_t out_total,
                                               int64_t b) {
    const __m256i low_nibbles = _mm256_set1_epi8(0x0F);
    const __m512 table = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512 out[4][4];
    for (int m = 0; m < m_rows; m++)
        for (int i = 0; i < 4; i++) out[m][i] = _mm512_setzero_ps();
    const uint8_t *block = packed + b * in_features * 32;
    const int64_t groups = in_features / group;
    for (int64_t g = 0; g < groups; g++) {
        const uint16_t *pairs = scales_and_zeros + (g * out_total + b * 64) * 2;
        if (g + SCALE_PREFETCH_GROUPS < groups) {
            const char *ahead = (const char *)(pairs + SCALE_PREFETCH_GROUPS * out_total * 2);
            for (int line = 0; line < 256; line += 64) _mm_prefetch(ahead + line, _MM_HINT_T0);
        }
        __m512 acc[4][4];
        for (int m = 0; m < m_rows; m++)
            for (int i = 0; i < 4; i++) acc[m][i] = _mm512_setzero_ps();
        for (int64_t k = g * group; k < (g + 1) * group; k++) {
            /* The weights are one sequential stream (blocks follow each other); asking for them ahead
             * keeps memory busy while the FMAs run. Prefetches past the end do not fault. */
            if (!(k & 1)) _mm_prefetch((const char *)(block + (k + WEIGHT_PREFETCH_K) * 32), _MM_HINT_T0);
            __m256i bytes = _mm256_loadu_si256((const __m256i *)(block + k * 32));
            __m256i lo = _mm256_and_si256(bytes, low_nibbles);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low_nibbles);
            __m512 q[4] = {
                _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(lo)), table),
                _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(lo, 1)), table),
                _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(hi)), table),
                _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(hi, 1)), table)};
            for (int m = 0; m < m_rows; m++) {
                const __m512 xk = _mm512_set1_ps(x[m * in_features + k]);
                for (int i = 0; i < 4; i++) acc[m][i] = _mm512_fmadd_ps(q[i], xk, acc[m][i]);
            }
        }
        for (int i = 0; i < 4; i++) {
            __m512 scale, zero;
            load_scale_zero(pairs + 16 * i * 2, &scale, &zero);
            for (int m = 0; m < m_rows; m++) {
                const __m512 s = _mm512_set1_ps(xsum[m * groups + g]);
                const __m512 centred = _mm512_fnmadd_ps(_mm512_set1_ps(8.0f), s, acc[m][i]);
                out[m][i] = _mm512_fmadd_ps(scale, centred, _mm512_fmadd_ps(zero, s, out[m][i]));
            }
        }
    }
    for (int m = 0; m < m_rows; m++)
        for (int i = 0; i < 4; i++) _mm512_storeu_ps(y + m * out_total + b * 64 + 16 * i, out[m][i]);
}

/* The M-row loops unrolled per M (registers: 4 x M accumulators and 4 x M outputs). */
#define GEMV_INT4_FOR(M)                                                                                  \
    AVX512_BF16 static void gemv_int4_##M(const uint8_t *packed, const uint16_t *sz, const float *x,      \
                                          const float *xsum, float *y, int64_t in_features, int64_t group, \
                                          int64_t out_total, int64_t first, int64_t count) {              \
        for (int64_t b = first; b < first + count; b++)                                                   \
            gemv_int4_block(packed, sz, x, xsum, y, M, in_features, group, out_total, b);                 \
    }
GEMV_INT4_FOR(1)
GEMV_INT4_FOR(2)
GEMV_INT4_FOR(3)
GEMV_INT4_FOR(4)

#endif

static PyObject *gemv_int4(PyObject *self, PyObject *args) {
    unsigned long long packed, scales_and_zeros, x, y;
    long long rows, in_features, group, out_total, first, count;
    if (!PyArg_ParseTuple(args, "KKKKLLLLLL", &packed, &scales_and_zeros, &x, &y, &rows, &in_features, &group,
                          &out_total, &first, &count))
        return NULL;
    if (!cpu_supported() || rows < 1 || rows > 4 || in_features <= 0 || group <= 0 || in_features % group ||
        out_total % 64 || first < 0 || count < 0 || (first + count) * 64 > out_total) {
        PyErr_SetString(PyExc_ValueError, "gemv_int4: unsupported CPU or shape");
        return NULL;
    }
#ifdef NATIVE_X86
    const int64_t groups = in_features / group;
    float *xsum = (float *)PyMem_RawMalloc(sizeof(float) * rows * groups);
    if (xsum == NULL) return PyErr_NoMemory();
    const float *xs = (const float *)x;
    void (*kernel)(const uint8_t *, const uint16_t *, const float *, const float *, float *, int64_t, int64_t,
                   int64_t, int64_t, int64_t) =
        rows == 1 ? gemv_int4_1 : rows == 2 ? gemv_int4_2 : rows == 3 ? gemv_int4_3 : gemv_int4_4;
    Py_BEGIN_ALLOW_THREADS
    for (int64_t m = 0; m < rows; m++)
        for (int64_t g = 0; g < groups; g++) {
            float total = 0.0f;
            for (int64_t k = g * group; k < (g + 1) * group; k++) total += xs[m * in_features + k];
            xsum[m * groups + g] = total;
        }
    kernel((const uint8_t *)packed, (const uint16_t *)scales_and_zeros, xs, xsum, (float *)y, in_features, group,
           out_total, first, count);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(xsum);
#endif
    Py_RETURN_NONE;
}

static PyObject *supported(PyObject *self, PyObject *args) {
    return PyBool_FromLong(cpu_supported());
}

static PyMethodDef methods[] = {
    {"supported", supported, METH_NOARGS, "Whether this CPU runs the GEMV (AVX-512 with BF16)."},
    {"gemv_int4", gemv_int4, METH_VARARGS,
     "x float32 [rows <= 4][in] @ int4 (torch CPU kernel layout)^T into y float32 [rows][out]."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_gemv", NULL, -1, methods};

PyMODINIT_FUNC PyInit__gemv(void) { return PyModule_Create(&module); }
