/* What the expansion (expand.c) and the decode GEMV (gemv.c) share: the AVX-512 target, and how
 * torch's CPU int4 kernel lays out weights and scales, which both read in place.
 *
 * Layout: block b of 64 output channels, input k -> 32 bytes whose low nibbles are channels 0..31 and
 * high nibbles 32..63 (blocks one after another, [out / 64][in][32]); scales_and_zeros is
 * [in / group][out][2] bf16, and the weight is (q - 8) * scale + zero.
 */
#ifndef ZHIKU_INT4_LAYOUT_H
#define ZHIKU_INT4_LAYOUT_H
#include <stdint.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define NATIVE_X86 1
#define AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

/* 16 (scale, zero) pairs of bf16, as torch's int4 kernel stores them interleaved, to float32. */
AVX512_BF16 static inline void load_scale_zero(const uint16_t *pairs, __m512 *scale, __m512 *zero) {
    __m512i bits = _mm512_loadu_si512((const void *)pairs);  /* each 32-bit lane: zero << 16 | scale */
    *scale = _mm512_castsi512_ps(_mm512_slli_epi32(bits, 16));
    *zero = _mm512_castsi512_ps(_mm512_and_si512(bits, _mm512_set1_epi32((int)0xFFFF0000)));
}

#endif

/* Whether this CPU runs the AVX-512 code (both modules refuse to run it otherwise). */
static inline int cpu_supported(void) {
#ifdef NATIVE_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

#endif
