//go:build cgo && amd64 && !purego

// AVX2 paths of ZeroKilled and MeasureKilled (kzero_mask.go), eight
// elements a step. MeasureKilled's eight running sums are the lanes of two
// vectors of four doubles (element i in lane i mod 8), so its additions
// are the Go twin's, in its order; the target has no FMA, so no multiply is
// fused into an addition.

#include "quantize_avx2.h"

// AVX2 and POPCNT (the counts of a step's kills).
#define KM_TARGET __attribute__((target("avx2,popcnt")))

// The 8 mask bytes at m as 32-bit lanes: all ones where the byte is not
// zero (a kill).
KM_TARGET static inline __m256i kz_kills8(const uint8_t *m) {
	const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)m));
	return _mm256_xor_si256(_mm256_cmpeq_epi32(b, _mm256_setzero_si256()), _mm256_set1_epi32(-1));
}

KM_TARGET static inline int kz_count(__m256i lanes) { return __builtin_popcount((unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(lanes))); }

// zeroKilledGo; out receives killed and wasZero.
KM_TARGET void pg_zero_killed(float *vals, const float *before, const uint8_t *mask, size_t n, uint64_t out[2]) {
	uint64_t killed = 0, was = 0;
	size_t i = 0;
	const __m256i zero = _mm256_setzero_si256();
	for (; i + 8 <= n; i += 8) {
		const __m256i kill = kz_kills8(mask + i);
		const __m256i b = _mm256_loadu_si256((const __m256i *)(before + i));
		_mm256_storeu_si256((__m256i *)(vals + i), _mm256_andnot_si256(kill, b));
		killed += (uint64_t)kz_count(kill);
		was += (uint64_t)kz_count(_mm256_and_si256(kill, _mm256_cmpeq_epi32(_mm256_slli_epi32(b, 1), zero)));
	}
	for (; i < n; i++) {
		uint32_t b = kq_f_bits(before[i]);
		if (mask[i] != 0) {
			killed++;
			was += (b << 1) == 0;
			b = 0;
		}
		vals[i] = kq_bits_f(b);
	}
	out[0] = killed;
	out[1] = was;
}

// measureKilledGo up to the combination of the sums: sums receives the
// eight running sums, out killed, exactZero and the largest killed
// magnitude's bits.
KM_TARGET void pg_measure_killed(const float *got, const float *before, const uint8_t *mask, size_t n, double sums[8],
                                 uint64_t out[3]) {
	uint64_t killed = 0, exact = 0;
	__m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
	__m256i maxb = _mm256_setzero_si256();
	const __m256i zero = _mm256_setzero_si256(), abs = _mm256_set1_epi32(0x7fffffff);
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		const __m256i kill = kz_kills8(mask + i);
		const __m256 g = _mm256_loadu_ps(got + i), b = _mm256_loadu_ps(before + i);
		const __m256i gk = _mm256_and_si256(_mm256_and_si256(_mm256_castps_si256(g), abs), kill);
		maxb = _mm256_max_epu32(maxb, gk);
		killed += (uint64_t)kz_count(kill);
		exact += (uint64_t)kz_count(_mm256_and_si256(kill, _mm256_cmpeq_epi32(gk, zero)));
		const __m256d k0 = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(kill)));
		const __m256d k1 = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_extracti128_si256(kill, 1)));
		const __m256d d0 = _mm256_andnot_pd(k0, _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(g)),
		                                                      _mm256_cvtps_pd(_mm256_castps256_ps128(b))));
		const __m256d d1 = _mm256_andnot_pd(k1, _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(g, 1)),
		                                                      _mm256_cvtps_pd(_mm256_extractf128_ps(b, 1))));
		s0 = _mm256_add_pd(s0, _mm256_mul_pd(d0, d0));
		s1 = _mm256_add_pd(s1, _mm256_mul_pd(d1, d1));
	}
	_mm256_storeu_pd(sums, s0);
	_mm256_storeu_pd(sums + 4, s1);
	uint32_t mb[8], m = 0;
	_mm256_storeu_si256((__m256i *)mb, maxb);
	for (int k = 0; k < 8; k++) m = mb[k] > m ? mb[k] : m;
	for (; i < n; i++) {
		if (mask[i] != 0) {
			const uint32_t g = kq_f_bits(got[i]) & 0x7fffffffu;
			killed++;
			exact += g == 0;
			m = g > m ? g : m;
			continue;
		}
		const double d = (double)got[i] - (double)before[i];
		sums[i & 7] += d * d;
	}
	out[0] = killed;
	out[1] = exact;
	out[2] = m;
}
