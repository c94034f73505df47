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

// kPackScaleMinK4: the 6-bit scale and min codes ls, lm of 8 sub-blocks
// into the 12 bytes sb of a Q4_K or Q5_K block.
static inline void kq_pack_scale_min_k4(uint8_t *sb, const uint8_t *ls, const uint8_t *lm) {
	for (int j = 0; j < 4; j++) {
		sb[j] = ls[j];
		sb[j + 4] = lm[j];
	}
	for (int j = 4; j < 8; j++) {
		sb[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
		sb[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
		sb[j] |= (uint8_t)((lm[j] >> 4) << 6);
	}
}

// Whether any of the n values is a NaN or an infinity.
static inline int kq_nonfinite(const float *x, int n) {
	for (int i = 0; i < n; i++) {
		if ((kq_f_bits(x[i]) & 0x7f800000u) == 0x7f800000u) return 1;
	}
	return 0;
}

// kq_transpose8x8 transposes the 8x8 matrix of rows r into the columns c:
// lane j of c[i] is lane i of r[j]. It moves the values and computes
// nothing.
KQ_TARGET static inline void kq_transpose8x8(const __m256 *r, __m256 *c) {
	__m256 t[8], s[8];
#pragma GCC unroll 4
	for (int j = 0; j < 8; j += 2) {
		t[j] = _mm256_unpacklo_ps(r[j], r[j + 1]);
		t[j + 1] = _mm256_unpackhi_ps(r[j], r[j + 1]);
	}
#pragma GCC unroll 2
	for (int j = 0; j < 8; j += 4) {
		s[j] = _mm256_shuffle_ps(t[j], t[j + 2], 0x44);
		s[j + 1] = _mm256_shuffle_ps(t[j], t[j + 2], 0xEE);
		s[j + 2] = _mm256_shuffle_ps(t[j + 1], t[j + 3], 0x44);
		s[j + 3] = _mm256_shuffle_ps(t[j + 1], t[j + 3], 0xEE);
	}
#pragma GCC unroll 4
	for (int i = 0; i < 4; i++) {
		c[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
		c[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
	}
}

// kq_transpose8x32 loads the 8 sub-blocks of 32 values of a super-block x
// into xt lane by lane: lane j of xt[i] is x[32*j+i] (four 8x8
// transposes, where eight-lane gathers cost several times more).
KQ_TARGET static inline void kq_transpose8x32(const float *x, __m256 *xt) {
	for (int i0 = 0; i0 < 32; i0 += 8) {
		__m256 r[8];
#pragma GCC unroll 8
		for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(x + 32 * j + i0);
		kq_transpose8x8(r, xt + i0);
	}
}

// kq_levels8x32 is the inverse of kq_transpose8x32 for levels: lane j of
// lt[i] (a small non-negative integer) goes to the byte L[32*j+i].
KQ_TARGET static inline void kq_levels8x32(const __m256i *lt, uint8_t *L) {
	__m256 c[4][8];
	for (int i0 = 0; i0 < 32; i0 += 8) kq_transpose8x8((const __m256 *)(lt + i0), c[i0 / 8]);
	const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
#pragma GCC unroll 8
	for (int j = 0; j < 8; j++) {
		// Packing interleaves the 128-bit halves; the permutation puts
		// the four groups of 8 levels back in order.
		const __m256i ab = _mm256_packus_epi32(_mm256_castps_si256(c[0][j]), _mm256_castps_si256(c[1][j]));
		const __m256i cd = _mm256_packus_epi32(_mm256_castps_si256(c[2][j]), _mm256_castps_si256(c[3][j]));
		_mm256_storeu_si256((__m256i *)(L + 32 * j), _mm256_permutevar8x32_epi32(_mm256_packus_epi16(ab, cd), order));
	}
}

// kq_nonfinite8 reports whether any lane of the n vectors v holds a NaN or
// an infinity.
KQ_TARGET static inline int kq_nonfinite8(const __m256 *v, int n) {
	const __m256i exp = _mm256_set1_epi32(0x7f800000);
	__m256i any = _mm256_setzero_si256();
	for (int i = 0; i < n; i++) {
		any = _mm256_or_si256(any, _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_castps_si256(v[i]), exp), exp));
	}
	return !_mm256_testz_si256(any, any);
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
