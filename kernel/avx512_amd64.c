//go:build cgo && amd64 && !purego

// The AVX-512 passes of the dynamics. They give the same bits as the AVX2
// passes and the Go reference by keeping the canonical order of core_go.go:
//
//   - Rows go two at a time through one 512-bit register, row o in the low
//     256-bit half and row o+1 in the high half, so each half is the 8-lane
//     accumulator of its own row, fed column block after column block as
//     the canonical order says, and its row reduction is the usual tree of
//     that half. Up to four such pairs (eight rows) are in flight at once,
//     which hides the latency of the accumulator chains and of the square
//     roots and quotient of the response.
//   - Column reductions (degrees, L x) must add row o before row o+1, so
//     they take the two halves one after the other, 256 bits wide.
//   - A row left over after the pairs goes through the AVX2 pass.
//
// Element-wise work is the same in either width, so only the grouping of
// rows differs from avx2_amd64.c.

#pragma GCC optimize("fp-contract=off")

#include <immintrin.h>
#include <stdint.h>

#include "physarium.h"

#define TGT512 __attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma")))
#define INLINE512 TGT512 static inline __attribute__((always_inline))

// lo8, hi8: the halves of a pair register.
INLINE512 __m256 lo8(__m512 v) { return _mm512_castps512_ps256(v); }
INLINE512 __m256 hi8(__m512 v) { return _mm512_extractf32x8_ps(v, 1); }

// tree8: ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)) of one half.
INLINE512 float tree8(__m256 v) {
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	__m128 s2 = _mm_add_ps(s, _mm_movehl_ps(s, s));
	return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

// join: a in the low half, b in the high half.
INLINE512 __m512 join(__m256 a, __m256 b) { return _mm512_insertf32x8(_mm512_castps256_ps512(a), b, 1); }

// dup: the 8 floats at x in both halves.
INLINE512 __m512 dup(const float *x) { return _mm512_broadcast_f32x8(_mm256_loadu_ps(x)); }

// pow_g512 is pow_g of avx2_amd64.c on np registers at once.
INLINE512 void pow_g512(__m512 *q, const int np, const phys_params *p) {
	__m512 acc[4], s[4];
#pragma GCC unroll 4
	for (int x = 0; x < np; x++)
		acc[x] = s[x] = q[x];
	for (int j = 1; j < p->gwhole; j++) {
#pragma GCC unroll 4
		for (int x = 0; x < np; x++)
			acc[x] = _mm512_mul_ps(acc[x], s[x]);
	}
	for (int k = 1; k <= p->gtop; k++) {
		const int use = (p->gbits >> (k - 1)) & 1;
#pragma GCC unroll 4
		for (int x = 0; x < np; x++) {
			s[x] = _mm512_sqrt_ps(s[x]);
			if (use)
				acc[x] = _mm512_mul_ps(acc[x], s[x]);
		}
	}
#pragma GCC unroll 4
	for (int x = 0; x < np; x++)
		q[x] = acc[x];
}

// The passes. Each group function handles np pairs of rows from row o (np
// is 1 or 2, a constant after inlining).

INLINE512 void degrees_group(const float *D, int cp, int o, const int np, float *deg_in, float *deg_out) {
	const float *r[8];
	__m512 l[4];
#pragma GCC unroll 4
	for (int k = 0; k < 2 * np; k++)
		r[k] = D + (int64_t)(o + k) * cp;
#pragma GCC unroll 4
	for (int p = 0; p < np; p++)
		l[p] = _mm512_setzero_ps();
	for (int i = 0; i < cp; i += 8) {
		__m256 c = _mm256_loadu_ps(deg_in + i);
#pragma GCC unroll 4
		for (int p = 0; p < np; p++) {
			__m256 a = _mm256_loadu_ps(r[2 * p] + i), b = _mm256_loadu_ps(r[2 * p + 1] + i);
			l[p] = _mm512_add_ps(l[p], join(a, b));
			c = _mm256_add_ps(_mm256_add_ps(c, a), b);
		}
		_mm256_storeu_ps(deg_in + i, c);
	}
#pragma GCC unroll 4
	for (int p = 0; p < np; p++) {
		deg_out[o + 2 * p] = tree8(lo8(l[p]));
		deg_out[o + 2 * p + 1] = tree8(hi8(l[p]));
	}
}

INLINE512 void lap_group(const float *D, int cp, int o, const int np, const float *v_in, const float *v_out, float *cacc,
                         float *dp_out) {
	const float *r[8];
	__m256 u[8];
	__m512 l[4];
#pragma GCC unroll 4
	for (int k = 0; k < 2 * np; k++) {
		r[k] = D + (int64_t)(o + k) * cp;
		u[k] = _mm256_set1_ps(v_out[o + k]);
	}
#pragma GCC unroll 4
	for (int p = 0; p < np; p++)
		l[p] = _mm512_setzero_ps();
	for (int i = 0; i < cp; i += 8) {
		const __m512 x = dup(v_in + i);
		__m256 c = _mm256_loadu_ps(cacc + i);
#pragma GCC unroll 4
		for (int p = 0; p < np; p++) {
			__m256 a = _mm256_loadu_ps(r[2 * p] + i), b = _mm256_loadu_ps(r[2 * p + 1] + i);
			l[p] = _mm512_fmadd_ps(join(a, b), x, l[p]);
			c = _mm256_fmadd_ps(b, u[2 * p + 1], _mm256_fmadd_ps(a, u[2 * p], c));
		}
		_mm256_storeu_ps(cacc + i, c);
	}
#pragma GCC unroll 4
	for (int p = 0; p < np; p++) {
		dp_out[o + 2 * p] = tree8(lo8(l[p]));
		dp_out[o + 2 * p + 1] = tree8(hi8(l[p]));
	}
}

INLINE512 float flux_group(const float *D, int cp, int o, const int np, const float *x_in, const float *x_out, float sumq) {
	const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
	const float *r[8];
	__m512 u[4], l[4];
#pragma GCC unroll 4
	for (int k = 0; k < 2 * np; k++)
		r[k] = D + (int64_t)(o + k) * cp;
#pragma GCC unroll 4
	for (int p = 0; p < np; p++) {
		u[p] = join(_mm256_set1_ps(x_out[o + 2 * p]), _mm256_set1_ps(x_out[o + 2 * p + 1]));
		l[p] = _mm512_setzero_ps();
	}
	for (int i = 0; i < cp; i += 8) {
		const __m512 x = dup(x_in + i);
#pragma GCC unroll 4
		for (int p = 0; p < np; p++) {
			__m512 d = join(_mm256_loadu_ps(r[2 * p] + i), _mm256_loadu_ps(r[2 * p + 1] + i));
			l[p] = _mm512_add_ps(l[p], _mm512_and_ps(_mm512_mul_ps(d, _mm512_sub_ps(x, u[p])), absmask));
		}
	}
#pragma GCC unroll 4
	for (int p = 0; p < np; p++) {
		sumq += tree8(lo8(l[p]));
		sumq += tree8(hi8(l[p]));
	}
	return sumq;
}

INLINE512 float adapt_group(float *D, int cp, int o, const int np, const float *x_in, const float *x_out, float iq,
                            const phys_params *p, int last, float *deg_in, float *cacc, float *deg_out, float *dp_out,
                            float sumd) {
	const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
	const __m512 one = _mm512_set1_ps(1.0f), c1 = _mm512_set1_ps(p->c1), c2 = _mm512_set1_ps(p->c2);
	const __m512 iqv = _mm512_set1_ps(iq);
	float *r[8];
	__m256 u[8];
	__m512 u2[4], ls[4], ld[4], dn[4];
#pragma GCC unroll 4
	for (int k = 0; k < 2 * np; k++) {
		r[k] = D + (int64_t)(o + k) * cp;
		u[k] = _mm256_set1_ps(x_out[o + k]);
	}
#pragma GCC unroll 4
	for (int q = 0; q < np; q++) {
		u2[q] = join(u[2 * q], u[2 * q + 1]);
		ls[q] = ld[q] = _mm512_setzero_ps();
	}
	for (int i = 0; i < cp; i += 8) {
		const __m512 x = dup(x_in + i);
		__m512 d[4], qg[4];
#pragma GCC unroll 4
		for (int q = 0; q < np; q++) {
			d[q] = join(_mm256_loadu_ps(r[2 * q] + i), _mm256_loadu_ps(r[2 * q + 1] + i));
			qg[q] = _mm512_mul_ps(_mm512_and_ps(_mm512_mul_ps(d[q], _mm512_sub_ps(x, u2[q])), absmask), iqv);
		}
		pow_g512(qg, np, p);
#pragma GCC unroll 4
		for (int q = 0; q < np; q++) {
			__m512 f = _mm512_div_ps(qg[q], _mm512_add_ps(one, qg[q]));
			dn[q] = _mm512_fmadd_ps(c2, f, _mm512_mul_ps(c1, d[q]));
			_mm256_storeu_ps(r[2 * q] + i, lo8(dn[q]));
			_mm256_storeu_ps(r[2 * q + 1] + i, hi8(dn[q]));
			ls[q] = _mm512_add_ps(ls[q], dn[q]);
			if (!last)
				ld[q] = _mm512_fmadd_ps(dn[q], x, ld[q]);
		}
		if (!last) {
			__m256 g = _mm256_loadu_ps(deg_in + i), c = _mm256_loadu_ps(cacc + i);
#pragma GCC unroll 4
			for (int q = 0; q < np; q++) {
				__m256 a = lo8(dn[q]), b = hi8(dn[q]);
				g = _mm256_add_ps(_mm256_add_ps(g, a), b);
				c = _mm256_fmadd_ps(b, u[2 * q + 1], _mm256_fmadd_ps(a, u[2 * q], c));
			}
			_mm256_storeu_ps(deg_in + i, g);
			_mm256_storeu_ps(cacc + i, c);
		}
	}
#pragma GCC unroll 4
	for (int q = 0; q < np; q++) {
		if (last) {
			sumd += tree8(lo8(ls[q]));
			sumd += tree8(hi8(ls[q]));
		} else {
			deg_out[o + 2 * q] = tree8(lo8(ls[q]));
			deg_out[o + 2 * q + 1] = tree8(hi8(ls[q]));
			dp_out[o + 2 * q] = tree8(lo8(ld[q]));
			dp_out[o + 2 * q + 1] = tree8(hi8(ld[q]));
		}
	}
	return sumd;
}

// The passes proper: groups of four rows, then a pair, then the AVX2 pass
// for a last single row.

TGT512 static void degrees512(const float *D, int rows, int cp, float *deg_in, float *deg_out) {
	int o = 0;
	for (; o + 8 <= rows; o += 8)
		degrees_group(D, cp, o, 4, deg_in, deg_out);
	for (; o + 4 <= rows; o += 4)
		degrees_group(D, cp, o, 2, deg_in, deg_out);
	if (o + 2 <= rows) {
		degrees_group(D, cp, o, 1, deg_in, deg_out);
		o += 2;
	}
	if (o < rows)
		phys_degrees_avx2(D + (int64_t)o * cp, rows - o, cp, deg_in, deg_out + o);
}

TGT512 static void lap512(const float *D, int rows, int cp, const float *v_in, const float *v_out, float *cacc, float *dp_out) {
	int o = 0;
	for (; o + 8 <= rows; o += 8)
		lap_group(D, cp, o, 4, v_in, v_out, cacc, dp_out);
	for (; o + 4 <= rows; o += 4)
		lap_group(D, cp, o, 2, v_in, v_out, cacc, dp_out);
	if (o + 2 <= rows) {
		lap_group(D, cp, o, 1, v_in, v_out, cacc, dp_out);
		o += 2;
	}
	if (o < rows)
		phys_lap_avx2(D + (int64_t)o * cp, rows - o, cp, v_in, v_out + o, cacc, dp_out + o);
}

TGT512 static float flux512(const float *D, int rows, int cp, const float *x_in, const float *x_out, float sumq) {
	int o = 0;
	for (; o + 8 <= rows; o += 8)
		sumq = flux_group(D, cp, o, 4, x_in, x_out, sumq);
	for (; o + 4 <= rows; o += 4)
		sumq = flux_group(D, cp, o, 2, x_in, x_out, sumq);
	if (o + 2 <= rows) {
		sumq = flux_group(D, cp, o, 1, x_in, x_out, sumq);
		o += 2;
	}
	if (o < rows)
		sumq = phys_flux_avx2(D + (int64_t)o * cp, rows - o, cp, x_in, x_out + o, sumq);
	return sumq;
}

TGT512 static float adapt512(float *D, int rows, int cp, const float *x_in, const float *x_out, float iq, const phys_params *p,
                             int last, float *deg_in, float *cacc, float *deg_out, float *dp_out, float sumd) {
	int o = 0;
	for (; o + 8 <= rows; o += 8)
		sumd = adapt_group(D, cp, o, 4, x_in, x_out, iq, p, last, deg_in, cacc, deg_out, dp_out, sumd);
	for (; o + 4 <= rows; o += 4)
		sumd = adapt_group(D, cp, o, 2, x_in, x_out, iq, p, last, deg_in, cacc, deg_out, dp_out, sumd);
	if (o + 2 <= rows) {
		sumd = adapt_group(D, cp, o, 1, x_in, x_out, iq, p, last, deg_in, cacc, deg_out, dp_out, sumd);
		o += 2;
	}
	if (o < rows)
		sumd = phys_adapt_avx2(D + (int64_t)o * cp, rows - o, cp, x_in, x_out + o, iq, p, last, deg_in, cacc, deg_out + o,
		                       dp_out + o, sumd);
	return sumd;
}

static const phys_passes passes_avx512 = {degrees512, lap512, flux512, adapt512};

// phys_run_avx512 runs the dynamics on every job with the AVX-512 passes.
void phys_run_avx512(float *arena, phys_job *jobs, int njobs, const phys_params *p) {
	phys_run(arena, jobs, njobs, p, &passes_avx512);
}
