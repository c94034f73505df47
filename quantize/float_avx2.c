//go:build cgo && amd64 && !purego

// AVX2 paths for the single-value types (F16, BF16, F32): decoding, and
// clearing the elements a kill mask names. Every routine computes exactly
// what the Go code in float.go computes, eight or sixteen lanes at a time.
// The target is avx2 without fma, so no multiply-add can be contracted.

#include <immintrin.h>
#include <stdint.h>
#include <stddef.h>
#include <string.h>

// Plain meaning: dst[i] = halfToFloat(src[i]) for i < n: normal values by
// rescaling the shifted bits by 2^-112, subnormals (exponent 0) by the
// magic-bias subtraction, the sign put back last.
__attribute__((target("avx2")))
void pg_decode_f16(const uint16_t *src, float *dst, size_t n) {
	const __m256i sign_m = _mm256_set1_epi32((int)0x80000000u);
	const __m256i exp_m = _mm256_set1_epi32(0x7C00 << 16);
	const __m256i magic = _mm256_set1_epi32(126 << 23);
	const __m256i bias = _mm256_set1_epi32((int)(0xE0u << 23));
	const __m256 half = _mm256_set1_ps(0.5f);
	const __m256 scale = _mm256_set1_ps(0x1p-112f);
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + i))), 16);
		__m256i sign = _mm256_and_si256(w, sign_m);
		__m256i two_w = _mm256_add_epi32(w, w);
		__m256 sub = _mm256_sub_ps(_mm256_castsi256_ps(_mm256_or_si256(_mm256_srli_epi32(two_w, 17), magic)), half);
		__m256 nrm = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_add_epi32(_mm256_srli_epi32(two_w, 4), bias)), scale);
		// two_w < 1<<27 exactly when the half's exponent field is 0.
		__m256i is_sub = _mm256_cmpeq_epi32(_mm256_and_si256(w, exp_m), _mm256_setzero_si256());
		__m256 r = _mm256_blendv_ps(nrm, sub, _mm256_castsi256_ps(is_sub));
		_mm256_storeu_ps(dst + i, _mm256_or_ps(r, _mm256_castsi256_ps(sign)));
	}
	for (; i < n; i++) {
		uint32_t w = (uint32_t)src[i] << 16, sign = w & 0x80000000u, two_w = w + w, b;
		float r;
		if (two_w < (1u << 27)) {
			b = (two_w >> 17) | (126u << 23);
			memcpy(&r, &b, 4);
			r -= 0.5f;
		} else {
			b = (two_w >> 4) + (0xE0u << 23);
			memcpy(&r, &b, 4);
			r *= 0x1p-112f;
		}
		memcpy(&b, &r, 4);
		b |= sign;
		memcpy(dst + i, &b, 4);
	}
}

// Plain meaning: dst[i] = float32 with bits src[i] << 16, for i < n.
__attribute__((target("avx2")))
void pg_decode_bf16(const uint16_t *src, float *dst, size_t n) {
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + i))), 16);
		_mm256_storeu_si256((__m256i *)(dst + i), w);
	}
	for (; i < n; i++) {
		uint32_t b = (uint32_t)src[i] << 16;
		memcpy(dst + i, &b, 4);
	}
}

// Plain meaning: for i < n with mask[i] != 0: count it in out[0], count it
// in out[1] when data[i] has no bits but the sign (+0 or -0), set data[i]
// to 0. data holds 16-bit values (F16, BF16).
__attribute__((target("avx2")))
void pg_clear_killed16(uint16_t *data, const uint8_t *mask, size_t n, uint64_t out[2]) {
	const __m256i zero = _mm256_setzero_si256();
	const __m256i mag = _mm256_set1_epi16(0x7FFF);
	uint64_t killed = 0, was_zero = 0;
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m256i m = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(mask + i)));
		__m256i keep = _mm256_cmpeq_epi16(m, zero);
		__m256i d = _mm256_loadu_si256((const __m256i *)(data + i));
		__m256i z = _mm256_cmpeq_epi16(_mm256_and_si256(d, mag), zero);
		unsigned kb = ~(unsigned)_mm256_movemask_epi8(keep);
		unsigned zb = (unsigned)_mm256_movemask_epi8(z) & kb;
		killed += (uint64_t)__builtin_popcount(kb) / 2;
		was_zero += (uint64_t)__builtin_popcount(zb) / 2;
		_mm256_storeu_si256((__m256i *)(data + i), _mm256_and_si256(d, keep));
	}
	for (; i < n; i++) {
		if (mask[i] == 0) continue;
		killed++;
		was_zero += (data[i] & 0x7FFF) == 0;
		data[i] = 0;
	}
	out[0] = killed;
	out[1] = was_zero;
}

// Plain meaning: pg_clear_killed16 for 32-bit values (F32).
__attribute__((target("avx2")))
void pg_clear_killed32(uint32_t *data, const uint8_t *mask, size_t n, uint64_t out[2]) {
	const __m256i zero = _mm256_setzero_si256();
	const __m256i mag = _mm256_set1_epi32(0x7FFFFFFF);
	uint64_t killed = 0, was_zero = 0;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256i m = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(mask + i)));
		__m256i keep = _mm256_cmpeq_epi32(m, zero);
		__m256i d = _mm256_loadu_si256((const __m256i *)(data + i));
		__m256i z = _mm256_cmpeq_epi32(_mm256_and_si256(d, mag), zero);
		unsigned kb = ~(unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(keep)) & 0xFF;
		unsigned zb = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(z)) & kb;
		killed += (uint64_t)__builtin_popcount(kb);
		was_zero += (uint64_t)__builtin_popcount(zb);
		_mm256_storeu_si256((__m256i *)(data + i), _mm256_and_si256(d, keep));
	}
	for (; i < n; i++) {
		if (mask[i] == 0) continue;
		killed++;
		was_zero += (data[i] & 0x7FFFFFFFu) == 0;
		data[i] = 0;
	}
	out[0] = killed;
	out[1] = was_zero;
}
