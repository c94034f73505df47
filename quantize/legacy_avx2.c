//go:build cgo && amd64 && !purego

// AVX2 paths for the hottest legacy codecs (Q8_0, Q4_0). Every routine
// computes exactly what the pure-Go code in legacy.go computes (and so what
// ggml's scalar reference computes), bit for bit: the same float32 products,
// sums and truncations, only eight lanes at a time. The encoders stop at a
// block holding a NaN and return its index; the Go caller encodes that
// block with the scalar code, whose NaN handling depends on element order.
// The target is avx2 without fma, so no multiply-add can be contracted.

#include "quantize_avx2.h"

// Plain meaning: dst[32i+j] = (int8)src[34i+2+j] * d_i.
__attribute__((target("avx2")))
void pg_decode_q8_0(const uint8_t *src, float *dst, size_t nb) {
	for (size_t i = 0; i < nb; i++) {
		const uint8_t *b = src + 34 * i;
		uint16_t h; memcpy(&h, b, 2);
		__m256 d = _mm256_set1_ps(kq_h2f(h));
		for (int j = 0; j < 32; j += 8) {
			__m128i q = _mm_loadl_epi64((const __m128i *)(b + 2 + j));
			__m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
			_mm256_storeu_ps(dst + 32 * i + j, _mm256_mul_ps(v, d));
		}
	}
}

// Plain meaning: dst[32i+j] = ((nibble j of block i) - 8) * d_i, low nibbles
// first (j < 16), high nibbles after.
__attribute__((target("avx2")))
void pg_decode_q4_0(const uint8_t *src, float *dst, size_t nb) {
	const __m128i m4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
	for (size_t i = 0; i < nb; i++) {
		const uint8_t *b = src + 18 * i;
		uint16_t h; memcpy(&h, b, 2);
		__m256 d = _mm256_set1_ps(kq_h2f(h));
		__m128i raw = _mm_loadu_si128((const __m128i *)(b + 2));
		__m128i lo = _mm_sub_epi8(_mm_and_si128(raw, m4), eight);
		__m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), eight);
		float *o = dst + 32 * i;
		_mm256_storeu_ps(o + 0, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), d));
		_mm256_storeu_ps(o + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), d));
		_mm256_storeu_ps(o + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), d));
		_mm256_storeu_ps(o + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), d));
	}
}

__attribute__((target("avx2")))
static inline int pg_has_nan(__m256 a, __m256 b, __m256 c, __m256 d) {
	__m256 u = _mm256_or_ps(_mm256_or_ps(_mm256_cmp_ps(a, a, _CMP_UNORD_Q), _mm256_cmp_ps(b, b, _CMP_UNORD_Q)),
	                        _mm256_or_ps(_mm256_cmp_ps(c, c, _CMP_UNORD_Q), _mm256_cmp_ps(d, d, _CMP_UNORD_Q)));
	return _mm256_movemask_ps(u) != 0;
}

__attribute__((target("avx2")))
static inline float pg_hmax(__m256 m) {
	__m128 x = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
	x = _mm_max_ps(x, _mm_movehl_ps(x, x));
	x = _mm_max_ss(x, _mm_shuffle_ps(x, x, 1));
	return _mm_cvtss_f32(x);
}

// roundf (halves away from zero) then C's float-to-int conversion: the
// fraction x - trunc(x) is exact, so comparing it with 0.5 decides exactly.
__attribute__((target("avx2")))
static inline __m256i pg_roundf_cvt(__m256 x) {
	const __m256 sign = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
	__m256 t = _mm256_round_ps(x, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
	__m256 f = _mm256_andnot_ps(sign, _mm256_sub_ps(x, t));
	__m256 adj = _mm256_and_ps(_mm256_cmp_ps(f, half, _CMP_GE_OQ), _mm256_or_ps(one, _mm256_and_ps(sign, x)));
	return _mm256_cvttps_epi32(_mm256_add_ps(t, adj));
}

// The low bytes of four vectors of int32, in order (C's truncating store).
__attribute__((target("avx2")))
static inline __m256i pg_low_bytes(__m256i a, __m256i b, __m256i c, __m256i d) {
	const __m256i ff = _mm256_set1_epi32(0xFF);
	__m256i ab = _mm256_packus_epi32(_mm256_and_si256(a, ff), _mm256_and_si256(b, ff));
	__m256i cd = _mm256_packus_epi32(_mm256_and_si256(c, ff), _mm256_and_si256(d, ff));
	__m256i p = _mm256_packus_epi16(ab, cd);
	return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// Plain meaning: encodeQ8_0 of legacy.go. Returns nb, or the index of the
// first block holding a NaN (not written).
__attribute__((target("avx2")))
size_t pg_encode_q8_0(const float *src, uint8_t *dst, size_t nb) {
	const __m256 sign = _mm256_set1_ps(-0.0f);
	for (size_t i = 0; i < nb; i++) {
		const float *x = src + 32 * i;
		__m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8), v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
		if (pg_has_nan(v0, v1, v2, v3)) return i;
		__m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
		                         _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
		float amax = pg_hmax(m);
		float d = amax / 127;
		float id = d != 0 ? 1.0f / d : 0.0f;
		uint8_t *y = dst + 34 * i;
		uint16_t h = kq_f2h(d);
		memcpy(y, &h, 2);
		__m256 vid = _mm256_set1_ps(id);
		__m256i q = pg_low_bytes(pg_roundf_cvt(_mm256_mul_ps(v0, vid)), pg_roundf_cvt(_mm256_mul_ps(v1, vid)),
		                         pg_roundf_cvt(_mm256_mul_ps(v2, vid)), pg_roundf_cvt(_mm256_mul_ps(v3, vid)));
		_mm256_storeu_si256((__m256i *)(y + 2), q);
	}
	return nb;
}

// MIN(15, (int8_t)(v*id + 8.5f)) as int32 lanes holding the uint8 result.
__attribute__((target("avx2")))
static inline __m256i pg_q4_code(__m256 v, __m256 id) {
	__m256i t = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(v, id), _mm256_set1_ps(8.5f)));
	t = _mm256_srai_epi32(_mm256_slli_epi32(t, 24), 24);
	return _mm256_and_si256(_mm256_min_epi32(t, _mm256_set1_epi32(15)), _mm256_set1_epi32(0xFF));
}

// Plain meaning: encodeQ4_0 of legacy.go. Returns nb, or the index of the
// first block holding a NaN (not written).
__attribute__((target("avx2")))
size_t pg_encode_q4_0(const float *src, uint8_t *dst, size_t nb) {
	const __m256 sign = _mm256_set1_ps(-0.0f);
	for (size_t i = 0; i < nb; i++) {
		const float *x = src + 32 * i;
		__m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8), v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
		if (pg_has_nan(v0, v1, v2, v3)) return i;
		__m256 a0 = _mm256_andnot_ps(sign, v0), a1 = _mm256_andnot_ps(sign, v1);
		__m256 a2 = _mm256_andnot_ps(sign, v2), a3 = _mm256_andnot_ps(sign, v3);
		float amax = pg_hmax(_mm256_max_ps(_mm256_max_ps(a0, a1), _mm256_max_ps(a2, a3)));
		float max = 0.0f; // the first value of largest magnitude, +0 when all are zero
		if (amax > 0) {
			__m256 t = _mm256_set1_ps(amax);
			uint32_t mask = (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(a0, t, _CMP_EQ_OQ)) |
			                (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(a1, t, _CMP_EQ_OQ)) << 8 |
			                (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(a2, t, _CMP_EQ_OQ)) << 16 |
			                (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(a3, t, _CMP_EQ_OQ)) << 24;
			max = x[__builtin_ctz(mask)];
		}
		float d = max / -8;
		float id = d != 0 ? 1.0f / d : 0.0f;
		uint8_t *y = dst + 18 * i;
		uint16_t h = kq_f2h(d);
		memcpy(y, &h, 2);
		__m256 vid = _mm256_set1_ps(id);
		const __m256i ff = _mm256_set1_epi32(0xFF);
		__m256i r0 = _mm256_and_si256(_mm256_or_si256(pg_q4_code(v0, vid), _mm256_slli_epi32(pg_q4_code(v2, vid), 4)), ff);
		__m256i r1 = _mm256_and_si256(_mm256_or_si256(pg_q4_code(v1, vid), _mm256_slli_epi32(pg_q4_code(v3, vid), 4)), ff);
		__m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r0, r1), 0xD8);
		__m128i bytes = _mm_packus_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
		_mm_storeu_si128((__m128i *)(y + 2), bytes);
	}
	return nb;
}
