//go:build cgo && amd64 && !purego

// The AVX2+FMA implementation of the dynamics. It follows the canonical order
// of core_go.go operation for operation: 8 lanes across columns, the fixed
// reduction tree, explicit fused multiply-adds, nothing contracted.

#pragma GCC optimize("fp-contract=off")

#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "physarium.h"

#define TGT __attribute__((target("avx2,fma")))

enum { VEC_CAP = 256 };
enum { V_DEG_IN, V_INV_IN, V_X_IN, V_R_IN, V_Z_IN, V_DIR_IN, V_AP_IN, V_CACC,
       V_DEG_OUT, V_INV_OUT, V_X_OUT, V_R_OUT, V_Z_OUT, V_DIR_OUT, V_AP_OUT, V_DP_OUT, NUM_VEC };

// fmaf(a, b, c), for the tests of the Go fma32.
float phys_fmaf(float a, float b, float c) { return fmaf(a, b, c); }

// tree: ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)).
TGT static inline float tree(__m256 v) {
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	__m128 s2 = _mm_add_ps(s, _mm_movehl_ps(s, s));
	return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

// dot: lanes of acc = fma(a, b, acc) over n (a multiple of 8), then tree.
TGT static float dot(const float *a, const float *b, int n) {
	__m256 acc = _mm256_setzero_ps();
	for (int j = 0; j < n; j += 8)
		acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), acc);
	return tree(acc);
}

// sum: lanes of acc + a, then tree.
TGT static float sum(const float *a, int n) {
	__m256 acc = _mm256_setzero_ps();
	for (int j = 0; j < n; j += 8)
		acc = _mm256_add_ps(acc, _mm256_loadu_ps(a + j));
	return tree(acc);
}

// inv[i] = 1/deg[i] where deg > 0 and the quotient is finite, else 0;
// returns how many are non-zero.
TGT static int inverse(const float *deg, float *inv, int n) {
	const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps(), big = _mm256_set1_ps(FLT_MAX);
	int cnt = 0;
	for (int j = 0; j < n; j += 8) {
		__m256 d = _mm256_loadu_ps(deg + j);
		__m256 q = _mm256_div_ps(one, d);
		__m256 m = _mm256_and_ps(_mm256_cmp_ps(d, zero, _CMP_GT_OQ), _mm256_cmp_ps(q, big, _CMP_LE_OQ));
		_mm256_storeu_ps(inv + j, _mm256_and_ps(m, q));
		cnt += __builtin_popcount((unsigned)_mm256_movemask_ps(m));
	}
	return cnt;
}

// z = inv * r.
TGT static void precond(float *z, const float *inv, const float *r, int n) {
	for (int j = 0; j < n; j += 8)
		_mm256_storeu_ps(z + j, _mm256_mul_ps(_mm256_loadu_ps(inv + j), _mm256_loadu_ps(r + j)));
}

// ap = fma(deg, v, -acc).
TGT static void finish_lap(float *ap, const float *deg, const float *v, const float *acc, int n) {
	for (int j = 0; j < n; j += 8)
		_mm256_storeu_ps(ap + j, _mm256_fmsub_ps(_mm256_loadu_ps(deg + j), _mm256_loadu_ps(v + j), _mm256_loadu_ps(acc + j)));
}

// pow_g: acc = q^whole by repeated products, then s = q; for k = 1..top:
// s = sqrt(s), and acc = acc*s where bit k of g's fraction is set.
TGT static inline __m256 pow_g(__m256 q, const phys_params *p) {
	__m256 acc = q;
	for (int j = 1; j < p->gwhole; j++)
		acc = _mm256_mul_ps(acc, q);
	__m256 s = q;
	for (int k = 1; k <= p->gtop; k++) {
		s = _mm256_sqrt_ps(s);
		if ((p->gbits >> (k - 1)) & 1)
			acc = _mm256_mul_ps(acc, s);
	}
	return acc;
}

TGT static void run_one(float *a, phys_job *jb, const phys_params *p, const phys_passes *ps) {
	const int R = jb->rows, cp = jb->cp, rp = jb->rp;
	float *D = a + jb->d;
	const float *b_in = a + jb->bin, *b_out = a + jb->bout;
	float *w = a + jb->work;
	memset(w, 0, sizeof(float) * NUM_VEC * VEC_CAP);
	float *deg_in = w + V_DEG_IN * VEC_CAP, *inv_in = w + V_INV_IN * VEC_CAP, *x_in = w + V_X_IN * VEC_CAP,
	      *r_in = w + V_R_IN * VEC_CAP, *z_in = w + V_Z_IN * VEC_CAP, *dir_in = w + V_DIR_IN * VEC_CAP,
	      *ap_in = w + V_AP_IN * VEC_CAP, *cacc = w + V_CACC * VEC_CAP;
	float *deg_out = w + V_DEG_OUT * VEC_CAP, *inv_out = w + V_INV_OUT * VEC_CAP, *x_out = w + V_X_OUT * VEC_CAP,
	      *r_out = w + V_R_OUT * VEC_CAP, *z_out = w + V_Z_OUT * VEC_CAP, *dir_out = w + V_DIR_OUT * VEC_CAP,
	      *ap_out = w + V_AP_OUT * VEC_CAP, *dp_out = w + V_DP_OUT * VEC_CAP;

	ps->degrees(D, R, cp, deg_in, deg_out);

	const float n = (float)jb->n;
	const int T = p->steps, K = p->cgiters;
	float sumd = 0;
	for (int t = 1; t <= T; t++) {
		int nact = inverse(deg_in, inv_in, cp) + inverse(deg_out, inv_out, rp);
		if (t == 1) {
			memcpy(r_in, b_in, sizeof(float) * cp);
			memcpy(r_out, b_out, sizeof(float) * rp);
		} else {
			for (int j = 0; j < cp; j += 8)
				_mm256_storeu_ps(r_in + j, _mm256_sub_ps(_mm256_loadu_ps(b_in + j), _mm256_loadu_ps(ap_in + j)));
			for (int j = 0; j < rp; j += 8)
				_mm256_storeu_ps(r_out + j, _mm256_sub_ps(_mm256_loadu_ps(b_out + j), _mm256_loadu_ps(ap_out + j)));
		}
		precond(z_in, inv_in, r_in, cp);
		precond(z_out, inv_out, r_out, rp);
		memcpy(dir_in, z_in, sizeof(float) * cp);
		memcpy(dir_out, z_out, sizeof(float) * rp);
		float rz = dot(r_in, z_in, cp) + dot(r_out, z_out, rp);
		for (int k = 1; k <= K; k++) {
			if (!(rz > 0))
				break;
			// ap = L dir.
			memset(cacc, 0, sizeof(float) * cp);
			ps->lap(D, R, cp, dir_in, dir_out, cacc, dp_out);
			finish_lap(ap_in, deg_in, dir_in, cacc, cp);
			finish_lap(ap_out, deg_out, dir_out, dp_out, rp);
			float pap = dot(dir_in, ap_in, cp) + dot(dir_out, ap_out, rp);
			if (!(pap > 0))
				break;
			float alpha = rz / pap;
			const __m256 av = _mm256_set1_ps(alpha);
			for (int j = 0; j < cp; j += 8) {
				_mm256_storeu_ps(x_in + j, _mm256_fmadd_ps(av, _mm256_loadu_ps(dir_in + j), _mm256_loadu_ps(x_in + j)));
				_mm256_storeu_ps(r_in + j, _mm256_fnmadd_ps(av, _mm256_loadu_ps(ap_in + j), _mm256_loadu_ps(r_in + j)));
			}
			for (int j = 0; j < rp; j += 8) {
				_mm256_storeu_ps(x_out + j, _mm256_fmadd_ps(av, _mm256_loadu_ps(dir_out + j), _mm256_loadu_ps(x_out + j)));
				_mm256_storeu_ps(r_out + j, _mm256_fnmadd_ps(av, _mm256_loadu_ps(ap_out + j), _mm256_loadu_ps(r_out + j)));
			}
			if (k == K)
				break;
			precond(z_in, inv_in, r_in, cp);
			precond(z_out, inv_out, r_out, rp);
			float rzn = dot(r_in, z_in, cp) + dot(r_out, z_out, rp);
			float beta = rzn / rz;
			const __m256 bv = _mm256_set1_ps(beta);
			for (int j = 0; j < cp; j += 8)
				_mm256_storeu_ps(dir_in + j, _mm256_fmadd_ps(bv, _mm256_loadu_ps(dir_in + j), _mm256_loadu_ps(z_in + j)));
			for (int j = 0; j < rp; j += 8)
				_mm256_storeu_ps(dir_out + j, _mm256_fmadd_ps(bv, _mm256_loadu_ps(dir_out + j), _mm256_loadu_ps(z_out + j)));
			rz = rzn;
		}

		// Zero mean over the active nodes.
		if (nact > 0) {
			float shift = (sum(x_in, cp) + sum(x_out, rp)) / (float)nact;
			const __m256 sv = _mm256_set1_ps(shift), zero = _mm256_setzero_ps();
			for (int j = 0; j < cp; j += 8) {
				__m256 m = _mm256_cmp_ps(_mm256_loadu_ps(inv_in + j), zero, _CMP_NEQ_OQ);
				_mm256_storeu_ps(x_in + j, _mm256_sub_ps(_mm256_loadu_ps(x_in + j), _mm256_and_ps(m, sv)));
			}
			for (int j = 0; j < rp; j += 8) {
				__m256 m = _mm256_cmp_ps(_mm256_loadu_ps(inv_out + j), zero, _CMP_NEQ_OQ);
				_mm256_storeu_ps(x_out + j, _mm256_sub_ps(_mm256_loadu_ps(x_out + j), _mm256_and_ps(m, sv)));
			}
		}

		// Mean absolute flux.
		float sumq = ps->flux(D, R, cp, x_in, x_out, 0);
		float iq = n / sumq;
		if (!(iq <= FLT_MAX))
			iq = 0;

		// Adapt, fused with the degrees of the new D and (unless last) L x.
		const int last = t == T;
		if (!last) {
			memset(deg_in, 0, sizeof(float) * cp);
			memset(cacc, 0, sizeof(float) * cp);
		}
		sumd = ps->adapt(D, R, cp, x_in, x_out, iq, p, last, deg_in, cacc, deg_out, dp_out, 0);
		if (!last) {
			finish_lap(ap_in, deg_in, x_in, cacc, cp);
			finish_lap(ap_out, deg_out, x_out, dp_out, rp);
		}
	}
	jb->sumd = sumd;
}

// The four passes over a tile's D, 256 bits wide, one row at a time (rows
// rows of D from the given pointers on; phys_passes in physarium.h).

// phys_degrees_avx2: deg_out[o] = row reduction of row o, deg_in += each row.
TGT void phys_degrees_avx2(const float *D, int rows, int cp, float *deg_in, float *deg_out) {
	for (int o = 0; o < rows; o++) {
		const float *row = D + (int64_t)o * cp;
		__m256 l = _mm256_setzero_ps();
		for (int i = 0; i < cp; i += 8) {
			__m256 d = _mm256_loadu_ps(row + i);
			l = _mm256_add_ps(l, d);
			_mm256_storeu_ps(deg_in + i, _mm256_add_ps(_mm256_loadu_ps(deg_in + i), d));
		}
		deg_out[o] = tree(l);
	}
}

// phys_lap_avx2: the products of L v: dp_out[o] = row reduction of
// fma(D, v_in, .), cacc += fma(D, v_out[o], .) row after row.
TGT void phys_lap_avx2(const float *D, int rows, int cp, const float *v_in, const float *v_out, float *cacc, float *dp_out) {
	for (int o = 0; o < rows; o++) {
		const float *row = D + (int64_t)o * cp;
		const __m256 u = _mm256_set1_ps(v_out[o]);
		__m256 l = _mm256_setzero_ps();
		for (int i = 0; i < cp; i += 8) {
			__m256 d = _mm256_loadu_ps(row + i);
			l = _mm256_fmadd_ps(d, _mm256_loadu_ps(v_in + i), l);
			_mm256_storeu_ps(cacc + i, _mm256_fmadd_ps(d, u, _mm256_loadu_ps(cacc + i)));
		}
		dp_out[o] = tree(l);
	}
}

// phys_flux_avx2 returns sumq plus the row reductions of |D (x_in - x_out[o])|,
// added row after row.
TGT float phys_flux_avx2(const float *D, int rows, int cp, const float *x_in, const float *x_out, float sumq) {
	const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
	for (int o = 0; o < rows; o++) {
		const float *row = D + (int64_t)o * cp;
		const __m256 u = _mm256_set1_ps(x_out[o]);
		__m256 l = _mm256_setzero_ps();
		for (int i = 0; i < cp; i += 8) {
			__m256 q = _mm256_mul_ps(_mm256_loadu_ps(row + i), _mm256_sub_ps(_mm256_loadu_ps(x_in + i), u));
			l = _mm256_add_ps(l, _mm256_and_ps(q, absmask));
		}
		sumq += tree(l);
	}
	return sumq;
}

// phys_adapt_avx2 adapts D in place to the flux normalized by iq. Unless
// last, it also accumulates the degrees of the new D (deg_in, deg_out) and
// the products of L x (cacc, dp_out); at the last step it returns sumd plus
// the row reductions of D_T, added row after row (else sumd).
TGT float phys_adapt_avx2(float *D, int rows, int cp, const float *x_in, const float *x_out, float iq, const phys_params *p,
                          int last, float *deg_in, float *cacc, float *deg_out, float *dp_out, float sumd) {
	const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
	const __m256 one = _mm256_set1_ps(1.0f), c1 = _mm256_set1_ps(p->c1), c2 = _mm256_set1_ps(p->c2);
	const __m256 iqv = _mm256_set1_ps(iq);
	for (int o = 0; o < rows; o++) {
		float *row = D + (int64_t)o * cp;
		const __m256 u = _mm256_set1_ps(x_out[o]);
		__m256 ls = _mm256_setzero_ps(), ld = _mm256_setzero_ps();
		for (int i = 0; i < cp; i += 8) {
			__m256 d = _mm256_loadu_ps(row + i);
			__m256 xi = _mm256_loadu_ps(x_in + i);
			__m256 q = _mm256_mul_ps(_mm256_and_ps(_mm256_mul_ps(d, _mm256_sub_ps(xi, u)), absmask), iqv);
			__m256 qg = pow_g(q, p);
			__m256 f = _mm256_div_ps(qg, _mm256_add_ps(one, qg));
			__m256 dn = _mm256_fmadd_ps(c2, f, _mm256_mul_ps(c1, d));
			_mm256_storeu_ps(row + i, dn);
			ls = _mm256_add_ps(ls, dn);
			if (!last) {
				ld = _mm256_fmadd_ps(dn, xi, ld);
				_mm256_storeu_ps(deg_in + i, _mm256_add_ps(_mm256_loadu_ps(deg_in + i), dn));
				_mm256_storeu_ps(cacc + i, _mm256_fmadd_ps(dn, u, _mm256_loadu_ps(cacc + i)));
			}
		}
		if (last) {
			sumd += tree(ls);
		} else {
			deg_out[o] = tree(ls);
			dp_out[o] = tree(ld);
		}
	}
	return sumd;
}

// phys_run runs the dynamics on every job with the given passes: D0 becomes
// D_T in place and sumd receives the tile reduction of D_T.
TGT void phys_run(float *arena, phys_job *jobs, int njobs, const phys_params *p, const phys_passes *ps) {
	for (int j = 0; j < njobs; j++)
		run_one(arena, &jobs[j], p, ps);
}

static const phys_passes passes_avx2 = {phys_degrees_avx2, phys_lap_avx2, phys_flux_avx2, phys_adapt_avx2};

// phys_run_avx2 runs the dynamics on every job with the AVX2 passes.
void phys_run_avx2(float *arena, phys_job *jobs, int njobs, const phys_params *p) {
	phys_run(arena, jobs, njobs, p, &passes_avx2);
}

// The per-element set-up and finish of a tile for the AVX2 path (kernel.go
// keeps the control flow; the Go path has its own loops with the same
// results). Every float operation below is one the Go loops do, on the same
// operands: counts, maxima and minima are order-free (up to the sign of
// zero, which kernel.go settles), and the row sums take the canonical lanes.

// tail_mask returns lanes 0..n-1 set (0 <= n <= 8).
TGT static inline __m256i tail_mask(int n) {
	const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
	return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}

// phys_check reports whether every weight is finite and, with act, every
// food |w|*a is at most FLT_MAX.
TGT int phys_check(const float *w, int64_t stride, int rows, int cols, const float *act) {
	const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), big = _mm256_set1_ps(FLT_MAX);
	__m256 ok = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
	const int full = cols & ~7;
	for (int o = 0; o < rows; o++) {
		const float *wr = w + (int64_t)o * stride;
		int i = 0;
		for (; i < full; i += 8) {
			__m256 f = _mm256_and_ps(_mm256_loadu_ps(wr + i), absmask);
			ok = _mm256_and_ps(ok, _mm256_cmp_ps(f, big, _CMP_LE_OQ));
			if (act)
				ok = _mm256_and_ps(ok, _mm256_cmp_ps(_mm256_mul_ps(f, _mm256_loadu_ps(act + i)), big, _CMP_LE_OQ));
		}
		for (; i < cols; i++) {
			float f = fabsf(wr[i]);
			if (!(f <= FLT_MAX))
				return 0;
			if (act && !(f * act[i] <= FLT_MAX))
				return 0;
		}
	}
	return _mm256_movemask_ps(ok) == 0xff;
}

// phys_food writes the food of a tile into d (rows x cp, padding +0) and
// returns the count of zero weights, the count of non-zero foods, the
// maximum food and the tile reduction of the food.
TGT void phys_food(const float *w, int64_t stride, int rows, int cols, const float *act, float *d, int cp, phys_food_out *out) {
	const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), zero = _mm256_setzero_ps();
	__m256i zc = _mm256_setzero_si256(), nc = _mm256_setzero_si256();
	__m256 mx = zero;
	float sumf = 0;
	const int full = cols & ~7, rest = cols - full;
	const __m256i tm = tail_mask(rest);
	for (int o = 0; o < rows; o++) {
		const float *wr = w + (int64_t)o * stride;
		float *dr = d + (int64_t)o * cp;
		__m256 l = zero;
		for (int i = 0; i < full; i += 8) {
			__m256 x = _mm256_loadu_ps(wr + i);
			__m256 f = _mm256_and_ps(x, absmask);
			if (act)
				f = _mm256_mul_ps(f, _mm256_loadu_ps(act + i));
			_mm256_storeu_ps(dr + i, f);
			zc = _mm256_sub_epi32(zc, _mm256_castps_si256(_mm256_cmp_ps(x, zero, _CMP_EQ_OQ)));
			nc = _mm256_sub_epi32(nc, _mm256_castps_si256(_mm256_cmp_ps(f, zero, _CMP_NEQ_UQ)));
			mx = _mm256_max_ps(f, mx);
			l = _mm256_add_ps(l, f);
		}
		if (rest) {
			__m256 x = _mm256_maskload_ps(wr + full, tm);
			__m256 f = _mm256_and_ps(x, absmask);
			if (act)
				f = _mm256_mul_ps(f, _mm256_maskload_ps(act + full, tm));
			_mm256_storeu_ps(dr + full, f);
			zc = _mm256_sub_epi32(zc, _mm256_and_si256(tm, _mm256_castps_si256(_mm256_cmp_ps(x, zero, _CMP_EQ_OQ))));
			nc = _mm256_sub_epi32(nc, _mm256_and_si256(tm, _mm256_castps_si256(_mm256_cmp_ps(f, zero, _CMP_NEQ_UQ))));
			mx = _mm256_max_ps(f, mx);
			l = _mm256_add_ps(l, f);
		}
		for (int i = full + (rest ? 8 : 0); i < cp; i += 8) // never: cp = pad8(cols)
			_mm256_storeu_ps(dr + i, zero);
		sumf += tree(l);
	}
	int32_t z[8], n[8];
	float m[8];
	_mm256_storeu_si256((__m256i *)z, zc);
	_mm256_storeu_si256((__m256i *)n, nc);
	_mm256_storeu_ps(m, mx);
	out->zero = 0;
	out->n = 0;
	out->maxf = 0;
	for (int k = 0; k < 8; k++) {
		out->zero += z[k];
		out->n += n[k];
		if (m[k] > out->maxf)
			out->maxf = m[k];
	}
	out->sumf = sumf;
}

// phys_scale multiplies the food by scale (columns < cols) and counts the
// non-zero results per row (rownz) and per column (colnz, added to).
TGT void phys_scale(float *d, int rows, int cols, int cp, float scale, int32_t *rownz, int32_t *colnz) {
	const __m256 s = _mm256_set1_ps(scale), zero = _mm256_setzero_ps();
	const int full = cols & ~7;
	for (int o = 0; o < rows; o++) {
		float *dr = d + (int64_t)o * cp;
		int nz = 0, i = 0;
		for (; i < full; i += 8) {
			__m256 v = _mm256_mul_ps(_mm256_loadu_ps(dr + i), s);
			_mm256_storeu_ps(dr + i, v);
			__m256 m = _mm256_cmp_ps(v, zero, _CMP_NEQ_UQ);
			nz += __builtin_popcount((unsigned)_mm256_movemask_ps(m));
			_mm256_storeu_si256((__m256i *)(colnz + i),
				_mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(colnz + i)), _mm256_castps_si256(m)));
		}
		for (; i < cols; i++) {
			float v = dr[i] * scale;
			dr[i] = v;
			if (v != 0) {
				nz++;
				colnz[i]++;
			}
		}
		rownz[o] = nz;
	}
}

// phys_finish copies D_T out (outd, rows x cols, when not NULL), marks the
// non-zero weights with D_T < thr in mask (rows mstride bytes apart; every
// byte of the tile written),
// counts the survivors per column (alive[i]) and row (alive[cols+o]), and
// returns the kills and the range of D_T over the non-zero weights.
TGT void phys_finish(const float *w, int64_t stride, int rows, int cols, const float *d, int cp, float thr,
                     uint8_t *mask, int64_t mstride, float *outd, int32_t *alive, phys_finish_out *out) {
	const __m256 zero = _mm256_setzero_ps(), tv = _mm256_set1_ps(thr);
	const __m128i one8 = _mm_set1_epi8(1);
	__m256 mn = _mm256_set1_ps(INFINITY), mx = _mm256_set1_ps(-INFINITY);
	float smn = INFINITY, smx = -INFINITY;
	int killed = 0;
	const int full = cols & ~7;
	int32_t *col = alive, *row = alive + cols;
	for (int o = 0; o < rows; o++) {
		const float *wr = w + (int64_t)o * stride, *dr = d + (int64_t)o * cp;
		uint8_t *mr = mask + (int64_t)o * mstride;
		float *od = outd ? outd + (int64_t)o * cols : NULL;
		int ra = 0, i = 0;
		for (; i < full; i += 8) {
			__m256 v = _mm256_loadu_ps(dr + i);
			__m256 nzw = _mm256_cmp_ps(_mm256_loadu_ps(wr + i), zero, _CMP_NEQ_UQ);
			__m256 lt = _mm256_cmp_ps(v, tv, _CMP_LT_OQ);
			__m256 kill = _mm256_and_ps(nzw, lt), live = _mm256_andnot_ps(lt, nzw);
			__m256i ki = _mm256_castps_si256(kill);
			__m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(ki), _mm256_extracti128_si256(ki, 1));
			_mm_storel_epi64((__m128i *)(mr + i), _mm_and_si128(_mm_packs_epi16(p16, p16), one8));
			killed += __builtin_popcount((unsigned)_mm256_movemask_ps(kill));
			ra += __builtin_popcount((unsigned)_mm256_movemask_ps(live));
			_mm256_storeu_si256((__m256i *)(col + i),
				_mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(col + i)), _mm256_castps_si256(live)));
			mn = _mm256_blendv_ps(mn, v, _mm256_and_ps(nzw, _mm256_cmp_ps(v, mn, _CMP_LT_OQ)));
			mx = _mm256_blendv_ps(mx, v, _mm256_and_ps(nzw, _mm256_cmp_ps(v, mx, _CMP_GT_OQ)));
			if (od)
				_mm256_storeu_ps(od + i, v);
		}
		for (; i < cols; i++) {
			float v = dr[i];
			if (od)
				od[i] = v;
			mr[i] = 0;
			if (wr[i] == 0)
				continue;
			if (v < smn)
				smn = v;
			if (v > smx)
				smx = v;
			if (v < thr) {
				mr[i] = 1;
				killed++;
			} else {
				col[i]++;
				ra++;
			}
		}
		row[o] = ra;
	}
	float a[8], b[8];
	_mm256_storeu_ps(a, mn);
	_mm256_storeu_ps(b, mx);
	for (int k = 0; k < 8; k++) {
		if (a[k] < smn)
			smn = a[k];
		if (b[k] > smx)
			smx = b[k];
	}
	out->killed = killed;
	out->mn = smn;
	out->mx = smx;
}
