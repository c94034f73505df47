// Helpers shared by the package's AVX2 C files (legacy_avx2.c,
// kquants_avx2.c, kquants_keepzeros_avx2.c): each is the Go function it
// names, performing the same IEEE single-precision operations.
#ifndef QUANTIZE_AVX2_H
#define QUANTIZE_AVX2_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define KQ_TARGET __attribute__((target("avx2")))

static inline float kq_bits_f(uint32_t w) { float f; memcpy(&f, &w, 4); return f; }
static inline uint32_t kq_f_bits(float f) { uint32_t w; memcpy(&w, &f, 4); return w; }

// kNearestInt.
static inline int32_t kq_nearest(float f) {
	float v = f + 12582912.f;
	return (int32_t)(kq_f_bits(v) & 0x007fffffu) - 0x00400000;
}

// kq_h2f is halfToFloat (quantize/float.go) in C.
static inline float kq_h2f(uint16_t h) {
	uint32_t w = (uint32_t)h << 16, sign = w & 0x80000000u, two_w = w + w;
	float r;
	if (two_w < (1u << 27)) r = kq_bits_f((two_w >> 17) | (126u << 23)) - 0.5f;
	else r = kq_bits_f((two_w >> 4) + (0xE0u << 23)) * 0x1p-112f;
	return kq_bits_f(sign | kq_f_bits(r));
}

// kq_f2h is floatToHalf (quantize/float.go) in C.
static inline uint16_t kq_f2h(float f) {
	uint32_t w = kq_f_bits(f), shl1 = w + w, sign = w & 0x80000000u;
	float base = (kq_bits_f(w & 0x7fffffffu) * 0x1p+112f) * 0x1p-110f;
	uint32_t bias = shl1 & 0xFF000000u;
	if (bias < 0x71000000u) bias = 0x71000000u;
	base = kq_bits_f((bias >> 1) + 0x07800000u) + base;
	uint32_t bits = kq_f_bits(base);
	uint32_t nonsign = ((bits >> 13) & 0x00007C00u) + (bits & 0x00000FFFu);
	if (shl1 > 0xFF000000u) nonsign = 0x7E00u;
	return (uint16_t)((sign >> 16) | nonsign);
}

// Whether any of the n values is a NaN or an infinity.
static inline int kq_nonfinite(const float *x, int n) {
	for (int i = 0; i < n; i++) {
		if ((kq_f_bits(x[i]) & 0x7f800000u) == 0x7f800000u) return 1;
	}
	return 0;
}

// kNearestInt of 8 lanes.
KQ_TARGET static inline __m256i kq_nearest8(__m256 f) {
	__m256 v = _mm256_add_ps(f, _mm256_set1_ps(12582912.f));
	__m256i b = _mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(0x007fffff));
	return _mm256_sub_epi32(b, _mm256_set1_epi32(0x00400000));
}

KQ_TARGET static inline __m256 kq_abs8(__m256 v) {
	return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
}

#endif
