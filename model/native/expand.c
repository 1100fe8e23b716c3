/* Expanding int4 / int8 weights to bfloat16 for a prefill GEMM, one pass over the weight.
 *
 * torch's elementwise ops take five passes for the int4 expansion (two nibble extractions, two
 * strided stores, scale and offset) at ~1 ns per weight, as much as the bf16 GEMM it feeds on an AMX
 * CPU (docs/benchmarks.md). These loops read each packed byte once and write each bf16 once.
 *
 * Called from model/native/__init__.py with raw addresses of contiguous CPU tensors the caller keeps
 * alive; the GIL is released while they run. Built for every x86-64 CPU (the AVX-512 code is selected
 * per function with target attributes); `supported()` says whether this CPU can run it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "int4_layout.h"

#ifdef NATIVE_X86
/* Four groups of 16 float32 -> 64 bfloat16 (round to nearest even) at dst. */
AVX512_BF16 static inline void store_bf16x64(uint16_t *dst, __m512 a, __m512 b, __m512 c, __m512 d) {
    _mm512_storeu_si512((void *)dst, (__m512i)_mm512_cvtne2ps_pbh(b, a));
    _mm512_storeu_si512((void *)(dst + 32), (__m512i)_mm512_cvtne2ps_pbh(d, c));
}

AVX512_BF16 static inline __m512 bytes_to_ps(__m128i bytes) {
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes));
}

/* The int4 layout of int4_layout.h, output channels first .. first + blocks * 64:
 * out[k][b*64 + j] = (q - 8) * scale + zero of (k / group, first + b*64 + j); out is [in][blocks*64]. */
AVX512_BF16 static void expand_int4_avx512(const uint8_t *packed, const uint16_t *scales_and_zeros,
                                           uint16_t *out, int64_t in_features, int64_t blocks, int64_t group,
                                           int64_t out_total, int64_t first) {
    const int64_t n = blocks * 64;
    const __m256i low_nibbles = _mm256_set1_epi8(0x0F);
    const __m512 eight = _mm512_set1_ps(8.0f);
    for (int64_t k = 0; k < in_features; k++) {
        const uint16_t *pairs = scales_and_zeros + ((k / group) * out_total + first) * 2;
        uint16_t *row = out + k * n;
        for (int64_t b = 0; b < blocks; b++) {
            __m256i bytes = _mm256_loadu_si256((const __m256i *)(packed + (b * in_features + k) * 32));
            __m256i lo = _mm256_and_si256(bytes, low_nibbles);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low_nibbles);
            __m128i quarters[4] = {_mm256_castsi256_si128(lo), _mm256_extracti128_si256(lo, 1),
                                   _mm256_castsi256_si128(hi), _mm256_extracti128_si256(hi, 1)};
            __m512 w[4];
            for (int i = 0; i < 4; i++) {
                __m512 scale, zero;
                load_scale_zero(pairs + (b * 64 + 16 * i) * 2, &scale, &zero);
                w[i] = _mm512_fmadd_ps(_mm512_sub_ps(bytes_to_ps(quarters[i]), eight), scale, zero);
            }
            store_bf16x64(row + b * 64, w[0], w[1], w[2], w[3]);
        }
    }
}

/* out[r][k] = q[r][k] * scale[r] for rows x in_features int8 (in_features a multiple of 64). */
AVX512_BF16 static void expand_int8_avx512(const int8_t *q, const float *scales, uint16_t *out,
                                           int64_t rows, int64_t in_features) {
    for (int64_t r = 0; r < rows; r++) {
        const __m512 scale = _mm512_set1_ps(scales[r]);
        const int8_t *src = q + r * in_features;
        uint16_t *dst = out + r * in_features;
        for (int64_t k = 0; k < in_features; k += 64) {
            __m512 w[4];
            for (int i = 0; i < 4; i++) {
                __m128i bytes = _mm_loadu_si128((const __m128i *)(src + k + 16 * i));
                w[i] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes)), scale);
            }
            store_bf16x64(dst + k, w[0], w[1], w[2], w[3]);
        }
    }
}

#endif

static PyObject *supported(PyObject *self, PyObject *args) {
    return PyBool_FromLong(cpu_supported());
}

static PyObject *expand_int4(PyObject *self, PyObject *args) {
    unsigned long long packed, scales_and_zeros, out;
    long long in_features, blocks, group, out_total, first;
    if (!PyArg_ParseTuple(args, "KKKLLLLL", &packed, &scales_and_zeros, &out, &in_features, &blocks, &group,
                          &out_total, &first))
        return NULL;
    if (!cpu_supported() || in_features <= 0 || blocks <= 0 || group <= 0 || in_features % group ||
        first < 0 || first + blocks * 64 > out_total) {
        PyErr_SetString(PyExc_ValueError, "expand_int4: unsupported CPU or shape");
        return NULL;
    }
#ifdef NATIVE_X86
    Py_BEGIN_ALLOW_THREADS
    expand_int4_avx512((const uint8_t *)packed, (const uint16_t *)scales_and_zeros, (uint16_t *)out,
                       in_features, blocks, group, out_total, first);
    Py_END_ALLOW_THREADS
#endif
    Py_RETURN_NONE;
}

static PyObject *expand_int8(PyObject *self, PyObject *args) {
    unsigned long long q, scales, out;
    long long rows, in_features;
    if (!PyArg_ParseTuple(args, "KKKLL", &q, &scales, &out, &rows, &in_features))
        return NULL;
    if (!cpu_supported() || rows <= 0 || in_features <= 0 || in_features % 64) {
        PyErr_SetString(PyExc_ValueError, "expand_int8: unsupported CPU or shape");
        return NULL;
    }
#ifdef NATIVE_X86
    Py_BEGIN_ALLOW_THREADS
    expand_int8_avx512((const int8_t *)q, (const float *)scales, (uint16_t *)out, rows, in_features);
    Py_END_ALLOW_THREADS
#endif
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"supported", supported, METH_NOARGS, "Whether this CPU runs the expansions (AVX-512 with BF16)."},
    {"expand_int4", expand_int4, METH_VARARGS, "int4 (torch CPU kernel layout) -> bf16 [in][out]."},
    {"expand_int8", expand_int8, METH_VARARGS, "int8 [rows][in] with per-row scales -> bf16 [rows][in]."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_expand", NULL, -1, methods};

PyMODINIT_FUNC PyInit__expand(void) { return PyModule_Create(&module); }
