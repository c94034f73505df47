//go:build cgo && amd64 && !purego

// AVX2 path of the zero-preserving Q4_K/Q5_K search: kKeepZerosFit
// (kquants_keepzeros.go) for the formats of 8 sub-blocks of 32 values, in
// which lane j of every vector is sub-block j. The loops over a sub-block's
// values (the sum of squares and range, every least-squares pass of
// kKZFitSub, kKZExact's errors and levels) and kKZTotal's predicted errors
// run for the 8 sub-blocks at once, kKZScales for 8 (ratio, factor) pairs
// at once; the per-sub-block decisions and kKZPick are the scalar Go code
// transcribed. Each operation is the Go code's, in its order and precision
// (float32 or float64), rounded one at a time: the target is avx2 without
// fma, so no multiply-add can be contracted.
//
// Where the Go code loops over a sub-block's survivors (its non-zero
// values), the vectors run over all 32 values: a zero adds exactly +0 to
// every sum (no sum is ever -0) and level 0 to every count, so the sums are
// the same. kKZExact stops once the error reaches the best error so far;
// here the sum runs to the end, which changes no decision: the terms are
// never negative, so a sum that reached the limit stays at or above it.
//
// Independent work is put side by side so that the core overlaps it
// rather than wait on one chain of dependent operations: the passes of a
// sub-block fit at the clipping factors (and the refinement passes of the
// zero levels) run in one loop over the values, as do the exact errors of
// the three best choices; and kKZTotal's running sums, which do not depend
// on its limit, are computed for every (ratio, factor) pair of a phase of
// the search before the pairs are taken in order, each stopping where
// kKZTotal stops. Each sum keeps its own order.

#include "quantize_avx2.h"
#include "kquants_keepzeros_avx2.h"

#include <math.h>
#include <stddef.h>

// The search's functions also use F16C, for kKZScales's conversions
// between float and half (vcvtps2ph rounds to nearest even, as
// floatToHalf does; the two differ only on NaN, which never reaches them).
#define KZ_TARGET __attribute__((target("avx2,f16c")))

// The kKZSubFit of each of the 8 sub-blocks, lane by lane: candidate c
// of sub-block j is [c][j], for c < nc[j] <= 2*qspan <= KZ_MAXC (unused
// slots hold zeros); maxnc is the largest nc.
#define KZ_MAXC 4
// The most (ratio, factor) pairs of one phase of the search, a multiple of 8.
#define KZ_MAXPAIRS 48
typedef struct {
	int32_t maxnc, pad[7], nc[8], q0[KZ_MAXC][8];
	double A[8], s[KZ_MAXC][8], C[KZ_MAXC][8], emin[KZ_MAXC][8];
} kz_lanes;

// Plain Go, for each lane j: the pass closure of kKZFitSub at step s[j]:
// is = float32(1/s[j]); over the values v, k = max(kmin[j], min(kmax[j],
// kNearestInt(v*is))), B[j] += float64(v)*float64(k), ci += k*k; then
// C[j] = float64(ci). KZ_PASSES(name, N) defines name, which runs N such
// passes (pass p at s[p], kmin[p], kmax[p], into B[p], C[p]) in one loop
// over the values, each with its own sums.
#define KZ_PASSES(name, N)                                                                                             \
	KZ_TARGET static void name(const __m256 *xt, const double (*s)[8], const int32_t (*kmin)[8],                   \
	                           const int32_t (*kmax)[8], double (*B)[8], double (*C)[8]) {                         \
		const __m256d one = _mm256_set1_pd(1.0);                                                               \
		__m256 is[N];                                                                                          \
		__m256i lo[N], hi[N], ci[N];                                                                           \
		__m256d b0[N], b1[N];                                                                                  \
		_Pragma("GCC unroll 4") for (int p = 0; p < N; p++) {                                                  \
			__m128 is0 = _mm256_cvtpd_ps(_mm256_div_pd(one, _mm256_loadu_pd(s[p])));                       \
			__m128 is1 = _mm256_cvtpd_ps(_mm256_div_pd(one, _mm256_loadu_pd(s[p] + 4)));                   \
			is[p] = _mm256_set_m128(is1, is0);                                                             \
			lo[p] = _mm256_loadu_si256((const __m256i *)kmin[p]);                                          \
			hi[p] = _mm256_loadu_si256((const __m256i *)kmax[p]);                                          \
			b0[p] = b1[p] = _mm256_setzero_pd();                                                           \
			ci[p] = _mm256_setzero_si256();                                                                \
		}                                                                                                      \
		for (int i = 0; i < 32; i++) {                                                                         \
			const __m256 v = xt[i];                                                                        \
			const __m256d v0 = _mm256_cvtps_pd(_mm256_castps256_ps128(v));                                 \
			const __m256d v1 = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));                               \
			_Pragma("GCC unroll 4") for (int p = 0; p < N; p++) {                                          \
				const __m256i k =                                                                      \
				    _mm256_max_epi32(lo[p], _mm256_min_epi32(hi[p], kq_nearest8(_mm256_mul_ps(v, is[p])))); \
				b0[p] = _mm256_add_pd(b0[p], _mm256_mul_pd(v0, _mm256_cvtepi32_pd(_mm256_castsi256_si128(k)))); \
				b1[p] = _mm256_add_pd(b1[p], _mm256_mul_pd(v1, _mm256_cvtepi32_pd(_mm256_extracti128_si256(k, 1)))); \
				ci[p] = _mm256_add_epi32(ci[p], _mm256_mullo_epi32(k, k));                             \
			}                                                                                              \
		}                                                                                                      \
		_Pragma("GCC unroll 4") for (int p = 0; p < N; p++) {                                                  \
			_mm256_storeu_pd(B[p], b0[p]);                                                                 \
			_mm256_storeu_pd(B[p] + 4, b1[p]);                                                             \
			_mm256_storeu_pd(C[p], _mm256_cvtepi32_pd(_mm256_castsi256_si128(ci[p])));                     \
			_mm256_storeu_pd(C[p] + 4, _mm256_cvtepi32_pd(_mm256_extracti128_si256(ci[p], 1)));           \
		}                                                                                                      \
	}
KZ_PASSES(kz_pass1, 1)
KZ_PASSES(kz_pass2, 2)
KZ_PASSES(kz_pass3, 3)

// kz_passes runs n passes (n <= 3) side by side.
static void kz_passes(int n, const __m256 *xt, const double (*s)[8], const int32_t (*kmin)[8], const int32_t (*kmax)[8],
                      double (*B)[8], double (*C)[8]) {
	switch (n) {
	case 1: kz_pass1(xt, s, kmin, kmax, B, C); break;
	case 2: kz_pass2(xt, s, kmin, kmax, B, C); break;
	case 3: kz_pass3(xt, s, kmin, kmax, B, C); break;
	}
}

// kz_lanes_pd is the lanes 4h..4h+3 of the lane bits m as a mask of doubles.
KZ_TARGET static inline __m256d kz_lanes_pd(int m, int h) {
	const __m256i bit = _mm256_setr_epi64x(1, 2, 4, 8);
	return _mm256_castsi256_pd(_mm256_cmpeq_epi64(_mm256_and_si256(_mm256_set1_epi64x(m >> (4 * h)), bit), bit));
}

// Plain Go, for each lane j whose bit is set in m: when C[j] > 0 and
// B[j] > 0, the fit (B, C) of error e = A - B*B/C is kept when e is below
// the best so far, be. It returns the bits of the lanes that kept theirs.
KZ_TARGET static int kz_keep8(int m, const double *A, const double *B, const double *C, double *be, double *bB,
                              double *bC) {
	const __m256d zero = _mm256_setzero_pd();
	int kept = 0;
	for (int h = 0; h < 2; h++) {
		const __m256d b = _mm256_loadu_pd(B + 4 * h), c = _mm256_loadu_pd(C + 4 * h), e0 = _mm256_loadu_pd(be + 4 * h);
		const __m256d e = _mm256_sub_pd(_mm256_loadu_pd(A + 4 * h), _mm256_div_pd(_mm256_mul_pd(b, b), c));
		__m256d take = _mm256_and_pd(kz_lanes_pd(m, h), _mm256_and_pd(_mm256_cmp_pd(c, zero, _CMP_GT_OQ),
		                                                                 _mm256_cmp_pd(b, zero, _CMP_GT_OQ)));
		take = _mm256_and_pd(take, _mm256_cmp_pd(e, e0, _CMP_LT_OQ));
		_mm256_storeu_pd(be + 4 * h, _mm256_blendv_pd(e0, e, take));
		_mm256_storeu_pd(bB + 4 * h, _mm256_blendv_pd(_mm256_loadu_pd(bB + 4 * h), b, take));
		_mm256_storeu_pd(bC + 4 * h, _mm256_blendv_pd(_mm256_loadu_pd(bC + 4 * h), c, take));
		kept |= _mm256_movemask_pd(take) << (4 * h);
	}
	return kept;
}

// Plain Go: kKZFitSub for the 8 sub-blocks (transposed in xt), then the
// largest step of the sub-blocks' best candidates, which it returns (smax).
// The zero levels' passes run side by side (kz_passes): every clipping
// factor of one level, then the refinement passes of all levels.
KZ_TARGET static double kz_fit_subs(const kz_params *p, const double *sfac, const __m256 *xt, kz_lanes *fit) {
	const __m256 zero = _mm256_setzero_ps();
	__m256 lo = zero, hi = zero;
	__m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
	__m256i cnt = _mm256_setzero_si256();
	for (int i = 0; i < 32; i++) {
		const __m256 v = xt[i];
		const __m256 nz = _mm256_cmp_ps(v, zero, _CMP_NEQ_OQ);
		const __m256 vz = _mm256_and_ps(v, nz); // +0 for a zero
		lo = _mm256_min_ps(lo, vz);
		hi = _mm256_max_ps(hi, vz);
		const __m256d v0 = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), v1 = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
		a0 = _mm256_add_pd(a0, _mm256_mul_pd(v0, v0));
		a1 = _mm256_add_pd(a1, _mm256_mul_pd(v1, v1));
		cnt = _mm256_sub_epi32(cnt, _mm256_castps_si256(nz));
	}
	float los[8], his[8];
	double A[8];
	int32_t n[8];
	_mm256_storeu_ps(los, lo);
	_mm256_storeu_ps(his, hi);
	_mm256_storeu_pd(A, a0);
	_mm256_storeu_pd(A + 4, a1);
	_mm256_storeu_si256((__m256i *)n, cnt);

	const int32_t nmax = p->nmax;
	double fl[8], fh[8];
	int32_t qf[8];
	// memset(fit, 0, sizeof *fit), by vector stores (a string store costs
	// more to start than this whole clearing).
	_Static_assert(sizeof *fit % 32 == 0, "kz_lanes is not a whole number of vectors");
	for (size_t i = 0; i < sizeof *fit; i += 32) _mm256_storeu_si256((__m256i *)((char *)fit + i), _mm256_setzero_si256());
	for (int j = 0; j < 8; j++) {
		if (n[j] == 0) continue;
		fit->A[j] = A[j];
		fl[j] = (double)(-los[j]);
		fh[j] = (double)his[j];
		qf[j] = (int32_t)((double)nmax * fl[j] / (fl[j] + fh[j]));
	}
	// The zero levels tried: candidate qi of lane j is q0[qi][j], where the
	// lane's bit of valid[qi] is set.
	const int nq = 2 * p->qspan;
	int valid[KZ_MAXC];
	int32_t q0[KZ_MAXC][8], kmin[KZ_MAXC][8], kmax[KZ_MAXC][8];
	double s0[KZ_MAXC][8], be[KZ_MAXC][8], bB[KZ_MAXC][8], bC[KZ_MAXC][8];
	for (int qi = 0; qi < nq; qi++) {
		valid[qi] = 0;
		for (int j = 0; j < 8; j++) {
			kmin[qi][j] = kmax[qi][j] = 0;
			s0[qi][j] = 1;
			be[qi][j] = INFINITY;
			bB[qi][j] = bC[qi][j] = 0;
			if (n[j] == 0) continue;
			q0[qi][j] = qf[j] + 1 - p->qspan + qi;
			if (q0[qi][j] < 0 || q0[qi][j] > nmax) continue;
			// cover(q0)
			double c = 0;
			int inf = 0;
			if (fl[j] > 0) {
				if (q0[qi][j] == 0) inf = 1;
				else c = fl[j] / (double)q0[qi][j];
			}
			if (!inf && fh[j] > 0) {
				if (q0[qi][j] == nmax) inf = 1;
				else {
					double t = fh[j] / (double)(nmax - q0[qi][j]);
					c = t > c ? t : c;
				}
			}
			if (inf || !(c > 0)) continue;
			valid[qi] |= 1 << j;
			s0[qi][j] = c;
			kmin[qi][j] = -q0[qi][j];
			kmax[qi][j] = nmax - q0[qi][j];
		}
	}
	double s[3][8], B[3][8], C[3][8];
	int32_t pkmin[3][8], pkmax[3][8];
	// The clipping factors, three passes at a time.
	for (int qi = 0; qi < nq; qi++) {
		if (!valid[qi]) continue;
		for (int fi = 0; fi < p->nsfac; fi += 3) {
			const int np = p->nsfac - fi < 3 ? p->nsfac - fi : 3;
			for (int k = 0; k < np; k++) {
				for (int j = 0; j < 8; j++) s[k][j] = valid[qi] >> j & 1 ? s0[qi][j] * sfac[fi + k] : 1;
				memcpy(pkmin[k], kmin[qi], sizeof pkmin[k]);
				memcpy(pkmax[k], kmax[qi], sizeof pkmax[k]);
			}
			kz_passes(np, xt, s, pkmin, pkmax, B, C);
			for (int k = 0; k < np; k++) kz_keep8(valid[qi], A, B[k], C[k], be[qi], bB[qi], bC[qi]);
		}
	}
	int active[KZ_MAXC];
	for (int qi = 0; qi < nq; qi++) {
		for (int j = 0; j < 8; j++) {
			if (valid[qi] >> j & 1 && isinf(be[qi][j])) valid[qi] &= ~(1 << j);
		}
		active[qi] = valid[qi];
	}
	// The refinement passes of all zero levels still improving, side by
	// side (up to three at a time).
	for (int it = 0; it < p->refine; it++) {
		int which[KZ_MAXC], nw = 0;
		for (int qi = 0; qi < nq; qi++) {
			if (active[qi]) which[nw++] = qi;
		}
		if (nw == 0) break;
		for (int w0 = 0; w0 < nw; w0 += 3) {
			const int np = nw - w0 < 3 ? nw - w0 : 3;
			for (int k = 0; k < np; k++) {
				const int qi = which[w0 + k];
				for (int j = 0; j < 8; j++) s[k][j] = active[qi] >> j & 1 ? bB[qi][j] / bC[qi][j] : 1;
				memcpy(pkmin[k], kmin[qi], sizeof pkmin[k]);
				memcpy(pkmax[k], kmax[qi], sizeof pkmax[k]);
			}
			kz_passes(np, xt, s, pkmin, pkmax, B, C);
			for (int k = 0; k < np; k++) {
				const int qi = which[w0 + k];
				active[qi] = kz_keep8(active[qi], A, B[k], C[k], be[qi], bB[qi], bC[qi]);
			}
		}
	}
	for (int qi = 0; qi < nq; qi++) {
		for (int j = 0; j < 8; j++) {
			if (!(valid[qi] >> j & 1)) continue;
			const int c = fit->nc[j]++;
			fit->q0[c][j] = q0[qi][j];
			fit->s[c][j] = bB[qi][j] / bC[qi][j];
			fit->C[c][j] = bC[qi][j];
			fit->emin[c][j] = be[qi][j];
			if (fit->nc[j] > fit->maxnc) fit->maxnc = fit->nc[j];
		}
	}
	double smax = 0;
	for (int j = 0; j < 8; j++) {
		double be = INFINITY, bs = 0;
		for (int c = 0; c < fit->nc[j]; c++) {
			if (fit->emin[c][j] < be) {
				be = fit->emin[c][j];
				bs = fit->s[c][j];
			}
		}
		smax = bs > smax ? bs : smax;
	}
	return smax;
}

// Plain Go: kKZNearest for candidate c of sub-block j.
static double kz_nearest(const kz_lanes *f, int j, int c, const kz_grid *gr, double d, double id, int32_t *sc) {
	if (gr->hi < gr->g) {
		*sc = -1;
		return INFINITY;
	}
	double t = f->s[c][j] * id * gr->invg;
	int32_t s = (int32_t)t;
	if (t - (double)s > 0.5) s++;
	s *= gr->g;
	s = s < gr->hi ? s : gr->hi;
	s = s > gr->g ? s : gr->g;
	double diff = d * (double)s - f->s[c][j];
	*sc = s;
	return f->emin[c][j] + f->C[c][j] * diff * diff;
}

// The grid entries of every lane's candidates at one ratio, for kz_total:
// ok is all ones where the candidate exists and has an allowed code.
typedef struct {
	int32_t ri; // the ratio index they are for, -1 for none yet
	double g[KZ_MAXC][8], hi[KZ_MAXC][8], invg[KZ_MAXC][8];
	uint64_t ok[KZ_MAXC][8];
} kz_lane_grid;

KZ_TARGET static void kz_grid_lanes(const kz_lanes *l, const kz_grid *grid, int32_t ri, kz_lane_grid *lg) {
	lg->ri = ri;
	const int *gi = (const int *)grid;                                      // kz_grid is {g, hi, invg}: 4 ints
	const double *gd = (const double *)((const char *)grid + offsetof(kz_grid, invg)); // 2 doubles apart
	const __m256i nc = _mm256_loadu_si256((const __m256i *)l->nc);
	const __m256d one = _mm256_set1_pd(1);
	for (int c = 0; c < l->maxnc; c++) {
		// Lanes with c >= nc hold q0 = 0, a valid index.
		const __m256i q = _mm256_loadu_si256((const __m256i *)l->q0[c]);
		const __m256i i4 = _mm256_slli_epi32(q, 2), i2 = _mm256_slli_epi32(q, 1);
		const __m256i g = _mm256_i32gather_epi32(gi, i4, 4), hi = _mm256_i32gather_epi32(gi + 1, i4, 4);
		const __m256i in = _mm256_andnot_si256(_mm256_cmpgt_epi32(g, hi), _mm256_cmpgt_epi32(nc, _mm256_set1_epi32(c)));
		for (int h = 0; h < 2; h++) {
			const __m128i g4 = h ? _mm256_extracti128_si256(g, 1) : _mm256_castsi256_si128(g);
			const __m128i hi4 = h ? _mm256_extracti128_si256(hi, 1) : _mm256_castsi256_si128(hi);
			const __m128i i24 = h ? _mm256_extracti128_si256(i2, 1) : _mm256_castsi256_si128(i2);
			const __m256i ok = _mm256_cvtepi32_epi64(h ? _mm256_extracti128_si256(in, 1) : _mm256_castsi256_si128(in));
			const __m256d okd = _mm256_castsi256_pd(ok);
			_mm256_storeu_si256((__m256i *)(lg->ok[c] + 4 * h), ok);
			_mm256_storeu_pd(lg->g[c] + 4 * h, _mm256_blendv_pd(one, _mm256_cvtepi32_pd(g4), okd));
			_mm256_storeu_pd(lg->hi[c] + 4 * h, _mm256_blendv_pd(one, _mm256_cvtepi32_pd(hi4), okd));
			_mm256_storeu_pd(lg->invg[c] + 4 * h, _mm256_blendv_pd(one, _mm256_i32gather_pd(gd, i24, 8), okd));
		}
	}
}

// Plain Go: kKZTotal, 4 sub-blocks per vector, with the grid entries of
// ratio lg->ri. int32(t) is t truncated, and the codes stay small
// integers, exact in float64, so the scale-code arithmetic runs in float64
// too. The total is in two steps: kz_runs writes the running sums of the
// sub-blocks' errors, in order (run[j] is the sum of the first j, run[8]
// all of them), which do not depend on the limit, so that those of many
// tries can be computed side by side; kz_stop then takes the sum where
// kKZTotal stops for a limit.
KZ_TARGET static void kz_runs(const kz_lanes *l, const kz_lane_grid *lg, double d, double *run) {
	const double id = 1 / d;
	const __m256d vd = _mm256_set1_pd(d), vid = _mm256_set1_pd(id), half = _mm256_set1_pd(0.5), one = _mm256_set1_pd(1);
	__m256d e[2] = {_mm256_loadu_pd(l->A), _mm256_loadu_pd(l->A + 4)};
#pragma GCC unroll 4
	for (int c = 0; c < l->maxnc; c++) {
#pragma GCC unroll 2
		for (int h = 0; h < 2; h++) {
			const __m256d s = _mm256_loadu_pd(l->s[c] + 4 * h), vg = _mm256_loadu_pd(lg->g[c] + 4 * h);
			const __m256d t = _mm256_mul_pd(_mm256_mul_pd(s, vid), _mm256_loadu_pd(lg->invg[c] + 4 * h));
			__m256d sc = _mm256_round_pd(t, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
			sc = _mm256_blendv_pd(sc, _mm256_add_pd(sc, one), _mm256_cmp_pd(_mm256_sub_pd(t, sc), half, _CMP_GT_OQ));
			sc = _mm256_max_pd(vg, _mm256_min_pd(_mm256_loadu_pd(lg->hi[c] + 4 * h), _mm256_mul_pd(sc, vg)));
			const __m256d diff = _mm256_sub_pd(_mm256_mul_pd(vd, sc), s);
			const __m256d x = _mm256_add_pd(_mm256_loadu_pd(l->emin[c] + 4 * h),
			                                _mm256_mul_pd(_mm256_mul_pd(_mm256_loadu_pd(l->C[c] + 4 * h), diff), diff));
			const __m256d take = _mm256_and_pd(_mm256_castsi256_pd(_mm256_loadu_si256((const __m256i *)(lg->ok[c] + 4 * h))),
			                                   _mm256_cmp_pd(x, e[h], _CMP_LT_OQ));
			e[h] = _mm256_blendv_pd(e[h], x, take);
		}
	}
	const __m128d q0 = _mm256_castpd256_pd128(e[0]), q1 = _mm256_extractf128_pd(e[0], 1);
	const __m128d q2 = _mm256_castpd256_pd128(e[1]), q3 = _mm256_extractf128_pd(e[1], 1);
	const __m128d r0 = _mm_setzero_pd();
	const __m128d r1 = _mm_add_sd(r0, q0), r2 = _mm_add_sd(r1, _mm_unpackhi_pd(q0, q0));
	const __m128d r3 = _mm_add_sd(r2, q1), r4 = _mm_add_sd(r3, _mm_unpackhi_pd(q1, q1));
	const __m128d r5 = _mm_add_sd(r4, q2), r6 = _mm_add_sd(r5, _mm_unpackhi_pd(q2, q2));
	const __m128d r7 = _mm_add_sd(r6, q3), r8 = _mm_add_sd(r7, _mm_unpackhi_pd(q3, q3));
	_mm256_storeu_pd(run, _mm256_set_m128d(_mm_unpacklo_pd(r2, r3), _mm_unpacklo_pd(r0, r1)));
	_mm256_storeu_pd(run + 4, _mm256_set_m128d(_mm_unpacklo_pd(r6, r7), _mm_unpacklo_pd(r4, r5)));
	_mm_store_sd(run + 8, r8);
}

// kz_stop is the sum of kKZTotal at limit from kz_runs's running sums: the
// first that is not below the limit, else the whole sum.
KZ_TARGET static inline double kz_stop(const double *run, double limit) {
	const __m256d lim = _mm256_set1_pd(limit);
	const int stop = _mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(run), lim, _CMP_NLT_UQ)) |
	                 _mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(run + 4), lim, _CMP_NLT_UQ)) << 4;
	return stop ? run[__builtin_ctz(stop)] : run[8];
}

// Plain Go: kKZPick with alt, for sub-block j.
static void kz_pick(const kz_lanes *fit, int j, const kz_grid *grid, double d, double id, int32_t *sc, int32_t *q0,
                    int32_t alt[2][2]) {
	double e = fit->A[j], e1 = INFINITY, e2 = INFINITY;
	*sc = 0;
	*q0 = 0;
	alt[0][0] = alt[1][0] = -1;
	alt[0][1] = alt[1][1] = 0;
	for (int c = 0; c < fit->nc[j]; c++) {
		const int32_t cq0 = fit->q0[c][j];
		const kz_grid *gr = &grid[cq0];
		int32_t s;
		double ee = kz_nearest(fit, j, c, gr, d, id, &s);
		if (s < 0) continue;
		int32_t s2 = s + gr->g;
		if (d * (double)s > fit->s[c][j]) s2 = s - gr->g;
		double diff = d * (double)s2 - fit->s[c][j];
		double ee2 = fit->emin[c][j] + fit->C[c][j] * diff * diff;
		if (s2 < gr->g || s2 > gr->hi) ee2 = INFINITY;
		const double oe[2] = {ee, ee2};
		const int32_t os[2] = {s, s2};
		for (int k = 0; k < 2; k++) {
			if (oe[k] < e) {
				e2 = e1;
				alt[1][0] = alt[0][0];
				alt[1][1] = alt[0][1];
				e1 = e;
				alt[0][0] = *sc;
				alt[0][1] = *q0;
				e = oe[k];
				*sc = os[k];
				*q0 = cq0;
			} else if (oe[k] < e1) {
				e2 = e1;
				alt[1][0] = alt[0][0];
				alt[1][1] = alt[0][1];
				e1 = oe[k];
				alt[0][0] = os[k];
				alt[0][1] = cq0;
			} else if (oe[k] < e2) {
				e2 = oe[k];
				alt[1][0] = os[k];
				alt[1][1] = cq0;
			}
		}
	}
}

// Plain Go: kKZScales for 8 (target, R) pairs at once, lane k with
// target[k] and R = rf[k] (as a float): d[k], dmin[k], and ok[k] all ones
// where it found them (else d = dmin = 0).
KZ_TARGET static void kz_scales8(const float *target, const float *rf, float *d, float *dmin, int32_t *ok) {
	const __m256 vr = _mm256_loadu_ps(rf), zero = _mm256_setzero_ps(), hmax = _mm256_set1_ps(65504);
	const __m128i expo = _mm_set1_epi16(0x7C00);
	__m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(target), _MM_FROUND_TO_NEAREST_INT);
	h = _mm_sub_epi16(h, _mm_cmpeq_epi16(h, _mm_setzero_si128())); // 0 -> 1
	__m256 bd = zero, bdm = zero, done = zero;
	for (unsigned drop = 0; drop <= 6; drop++) {
		__m128i hh = h;
		if (drop > 0) {
			// Round the mantissa to fewer bits, staying within the half range.
			const uint16_t mask = (uint16_t)((1u << drop) - 1);
			const __m128i keep = _mm_set1_epi16((short)(uint16_t)~mask);
			hh = _mm_and_si128(_mm_add_epi16(h, _mm_set1_epi16((short)((mask >> 1) + 1))), keep);
			const __m128i over = _mm_cmpeq_epi16(_mm_and_si128(hh, expo), expo);
			hh = _mm_blendv_epi8(hh, _mm_and_si128(h, keep), over);
		}
		const __m256 vd = _mm256_cvtph_ps(hh), prod = _mm256_mul_ps(vd, vr);
		const __m256 vdm = _mm256_cvtph_ps(_mm256_cvtps_ph(prod, _MM_FROUND_TO_NEAREST_INT));
		const __m256 good = _mm256_and_ps(_mm256_and_ps(_mm256_cmp_ps(vd, zero, _CMP_GT_OQ), _mm256_cmp_ps(vdm, prod, _CMP_EQ_OQ)),
		                                  _mm256_cmp_ps(vdm, hmax, _CMP_LT_OQ));
		const __m256 take = _mm256_andnot_ps(done, good);
		bd = _mm256_blendv_ps(bd, vd, take);
		bdm = _mm256_blendv_ps(bdm, vdm, take);
		done = _mm256_or_ps(done, good);
		if (_mm256_movemask_ps(done) == 0xFF) break;
	}
	_mm256_storeu_ps(d, bd);
	_mm256_storeu_ps(dmin, bdm);
	_mm256_storeu_si256((__m256i *)ok, _mm256_castps_si256(done));
}

// Plain Go, for each lane j with ok[j]: the levels of kKZExact on
// sub-block j with scale code sc[j] and zero level q0[j] (m[j] =
// sc*q0/R), d1 = d*sc, m1 = dmin*m, into L[32j:]; the levels of the other
// lanes are 0.
KZ_TARGET static void kz_levels(const __m256 *xt, int32_t nmax, const int *ok, const int32_t *sc, const int32_t *q0,
                                const float *d1, const float *m1, uint8_t *L) {
	float id1[8];
	int32_t keep[8];
	for (int j = 0; j < 8; j++) {
		keep[j] = ok[j] && sc[j] != 0 ? -1 : 0; // sc == 0 keeps level 0
		id1[j] = ok[j] && sc[j] != 0 ? 1 / d1[j] : 1;
	}
	const __m256 zero = _mm256_setzero_ps();
	const __m256 vm1 = _mm256_loadu_ps(m1), vid1 = _mm256_loadu_ps(id1);
	const __m256i vq0 = _mm256_loadu_si256((const __m256i *)q0), lmax = _mm256_set1_epi32(nmax);
	const __m256i lmin = _mm256_setzero_si256(), vkeep = _mm256_loadu_si256((const __m256i *)keep);
	__m256i lt[32];
	for (int i = 0; i < 32; i++) {
		const __m256 v = xt[i];
		const __m256 nz = _mm256_cmp_ps(v, zero, _CMP_NEQ_OQ);
		__m256i q = kq_nearest8(_mm256_mul_ps(_mm256_add_ps(v, vm1), vid1));
		q = _mm256_max_epi32(lmin, _mm256_min_epi32(lmax, q));
		q = _mm256_blendv_epi8(vq0, q, _mm256_castps_si256(nz));
		lt[i] = _mm256_and_si256(vkeep, q);
	}
	kq_levels8x32(lt, L);
}

// Plain Go, for each lane j: kKZExact's error on sub-block j, summed to
// the end, for three choices at once: choice k with ok[k], sc[k], d1[k] =
// d*sc and m1[k] = dmin*m, into e[k]; each error is summed on its own, in
// the Go code's order.
KZ_TARGET static void kz_exact3(const __m256 *xt, int32_t nmax, const int (*ok)[8], const int32_t (*sc)[8],
                                const float (*d1)[8], const float (*m1)[8], float (*e)[8]) {
	float id1[3][8];
	int32_t zs[3][8];
	for (int k = 0; k < 3; k++) {
		for (int j = 0; j < 8; j++) {
			zs[k][j] = ok[k][j] && sc[k][j] == 0 ? -1 : 0;
			id1[k][j] = ok[k][j] && sc[k][j] != 0 ? 1 / d1[k][j] : 1;
		}
	}
	const __m256 zero = _mm256_setzero_ps();
	const __m256i lmax = _mm256_set1_epi32(nmax), lmin = _mm256_setzero_si256();
	__m256 vd1[3], vm1[3], vid1[3], e1[3];
#pragma GCC unroll 3
	for (int k = 0; k < 3; k++) {
		vd1[k] = _mm256_loadu_ps(d1[k]);
		vm1[k] = _mm256_loadu_ps(m1[k]);
		vid1[k] = _mm256_loadu_ps(id1[k]);
		e1[k] = zero;
	}
	__m256 e0 = zero;
	for (int i = 0; i < 32; i++) {
		const __m256 v = xt[i];
		e0 = _mm256_add_ps(e0, _mm256_mul_ps(v, v));
		const __m256 nz = _mm256_cmp_ps(v, zero, _CMP_NEQ_OQ);
#pragma GCC unroll 3
		for (int k = 0; k < 3; k++) {
			__m256i q = kq_nearest8(_mm256_mul_ps(_mm256_add_ps(v, vm1[k]), vid1[k]));
			q = _mm256_max_epi32(lmin, _mm256_min_epi32(lmax, q));
			const __m256 y = _mm256_sub_ps(_mm256_mul_ps(vd1[k], _mm256_cvtepi32_ps(q)), vm1[k]);
			const __m256 diff = _mm256_sub_ps(v, y);
			e1[k] = _mm256_blendv_ps(e1[k], _mm256_add_ps(e1[k], _mm256_mul_ps(diff, diff)), nz);
		}
	}
#pragma GCC unroll 3
	for (int k = 0; k < 3; k++) {
		_mm256_storeu_ps(e[k], _mm256_blendv_ps(e1[k], e0, _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)zs[k]))));
	}
}

// The state of kKeepZerosFit's search over ratios and scales.
typedef struct {
	const kz_params *p;
	const int32_t *ratios;
	const kz_grid *grid;
	const kz_lanes *lanes;
	kz_lane_grid *lg;
	double smax, best;
	float bd, bdmin;
	int bri;
} kz_search;

// Plain Go: the try closure of kKeepZerosFit, with kKZScales's d and dmin
// (ok false when it found none) and kz_runs's running sums computed
// before.
static inline double kz_try(kz_search *st, int ri, float d, float dmin, int32_t ok, const double *run) {
	if (!ok) return INFINITY;
	double tot = kz_stop(run, st->best);
	if (tot < st->best) {
		st->best = tot;
		st->bd = d;
		st->bdmin = dmin;
		st->bri = ri;
	}
	return tot;
}

// kz_runs_pairs runs kz_runs for the n (ratio, factor) pairs whose scales
// kz_scales_pairs found, into run[k].
KZ_TARGET static void kz_runs_pairs(kz_search *st, int n, const int *ri, const float *d, const int32_t *ok,
                                    double (*run)[12]) {
	for (int k = 0; k < n; k++) {
		if (!ok[k]) continue;
		if (st->lg->ri != ri[k]) kz_grid_lanes(st->lanes, st->grid + 32 * ri[k], ri[k], st->lg);
		kz_runs(st->lanes, st->lg, (double)d[k], run[k]);
	}
}

// kz_scales_pairs runs kz_scales8 over n (ratio, factor) pairs, pair k
// being ratio ri[k] at factor fi[k]: the target of kKZScales is
// float32(smax/scMax*dfac[fi]), as in the try closure.
KZ_TARGET static void kz_scales_pairs(const kz_search *st, const double *dfac, int n, const int *ri, const int *fi,
                                      float *d, float *dmin, int32_t *ok) {
	const double unit = st->smax / (double)st->p->scmax;
	for (int k0 = 0; k0 < n; k0 += 8) {
		float target[8], rf[8];
		for (int k = 0; k < 8; k++) {
			target[k] = rf[k] = 1;
			if (k0 + k < n) {
				target[k] = (float)(unit * dfac[fi[k0 + k]]);
				rf[k] = (float)st->ratios[ri[k0 + k]];
			}
		}
		kz_scales8(target, rf, d + k0, dmin + k0, ok + k0);
	}
}

// kz_fit45 is kKeepZerosFit for a format of 8 sub-blocks of 32 (Q4_K,
// Q5_K) on the 256 values x; it returns 0 where the Go code returns false.
// grid holds p->nratios rows of 32 entries.
KZ_TARGET int kz_fit45(const kz_params *p, const int32_t *ratios, const double *dfac, const double *sfac,
                       const kz_grid *grid, const float *x, kz_result *r) {
	__m256 xt[32];
	kq_transpose8x32(x, xt);
	if (kq_nonfinite8(xt, 32)) return 0;
	kz_lanes lanes;
	double smax = kz_fit_subs(p, sfac, xt, &lanes);
	kz_lane_grid lg;
	lg.ri = -1;
	if (smax == 0) {
		memset(r, 0, sizeof *r);
		return 1;
	}
	if (!(smax < 65504 * (double)p->scmax / 2)) return 0;

	kz_search st = {.p = p, .ratios = ratios, .grid = grid, .lanes = &lanes, .lg = &lg, .smax = smax,
	                .best = INFINITY, .bri = -1};
	double rbest[2] = {INFINITY, INFINITY};
	int rbi[2] = {-1, -1};
	// Every ratio at the first two factors, then every factor for the two
	// best ratios; kKZScales first for all the pairs of each phase.
	int pri[KZ_MAXPAIRS], pfi[KZ_MAXPAIRS], np = 0;
	float pd[KZ_MAXPAIRS], pdmin[KZ_MAXPAIRS];
	int32_t pok[KZ_MAXPAIRS];
	const int nf1 = p->ndfac < 2 ? p->ndfac : 2;
	for (int ri = 0; ri < p->nratios; ri++) {
		for (int fi = 0; fi < nf1; fi++) pri[np] = ri, pfi[np] = fi, np++;
	}
	double run[KZ_MAXPAIRS][12];
	kz_scales_pairs(&st, dfac, np, pri, pfi, pd, pdmin, pok);
	kz_runs_pairs(&st, np, pri, pd, pok, run);
	for (int ri = 0, k = 0; ri < p->nratios; ri++) {
		double e = INFINITY;
		for (int fi = 0; fi < nf1; fi++, k++) {
			double t = kz_try(&st, ri, pd[k], pdmin[k], pok[k], run[k]);
			e = t < e ? t : e;
		}
		if (e < rbest[0]) {
			rbest[1] = rbest[0];
			rbi[1] = rbi[0];
			rbest[0] = e;
			rbi[0] = ri;
		} else if (e < rbest[1]) {
			rbest[1] = e;
			rbi[1] = ri;
		}
	}
	np = 0;
	for (int k = 0; k < 2; k++) {
		if (rbi[k] < 0) continue;
		for (int fi = 2; fi < p->ndfac; fi++) pri[np] = rbi[k], pfi[np] = fi, np++;
	}
	kz_scales_pairs(&st, dfac, np, pri, pfi, pd, pdmin, pok);
	kz_runs_pairs(&st, np, pri, pd, pok, run);
	for (int k = 0; k < np; k++) kz_try(&st, pri[k], pd[k], pdmin[k], pok[k], run[k]);
	const float bd = st.bd, bdmin = st.bdmin;
	const int bri = st.bri;
	if (bri < 0) return 0;
	const int32_t R = ratios[bri];
	const kz_grid *gr = grid + 32 * bri;
	r->hd = kq_f2h(bd);
	r->hm = kq_f2h(bdmin);

	// Per sub-block, the exact error of the best predicted choices decides.
	int32_t cand[3][2][8]; // [slot][sc, q0][lane]
	for (int j = 0; j < 8; j++) {
		for (int k = 0; k < 3; k++) cand[k][0][j] = -1, cand[k][1][j] = 0;
		if (lanes.nc[j] == 0) continue;
		int32_t sc, q0, alt[2][2];
		kz_pick(&lanes, j, gr, (double)bd, 1 / (double)bd, &sc, &q0, alt);
		cand[0][0][j] = sc, cand[0][1][j] = q0;
		cand[1][0][j] = alt[0][0], cand[1][1][j] = alt[0][1];
		cand[2][0][j] = alt[1][0], cand[2][1][j] = alt[1][1];
	}
	float bestE[8];
	int32_t bsc[8], bq0[8];
	for (int j = 0; j < 8; j++) {
		bestE[j] = INFINITY;
		bsc[j] = -1;
		bq0[j] = 0;
	}
	// The candidates' errors first, side by side; the levels of each
	// lane's winner after, computed again as they were for its error.
	int cok[3][8];
	int32_t csc[3][8];
	float cd1[3][8], cm1[3][8], ce[3][8];
	for (int k = 0; k < 3; k++) {
		for (int j = 0; j < 8; j++) {
			const int32_t sc = cand[k][0][j], q0 = cand[k][1][j];
			csc[k][j] = sc;
			cok[k][j] = 0;
			cd1[k][j] = cm1[k][j] = 0;
			if (sc < 0) continue;
			const int32_t m = sc * q0 / R;
			if (m * R != sc * q0 || m > p->mmax || sc > p->scmax) continue;
			cd1[k][j] = bd * (float)sc;
			cm1[k][j] = bdmin * (float)m;
			const float z = cd1[k][j] * (float)q0;
			if (z - cm1[k][j] != 0) continue;
			cok[k][j] = 1;
		}
	}
	kz_exact3(xt, p->nmax, cok, csc, cd1, cm1, ce);
	for (int k = 0; k < 3; k++) {
		for (int j = 0; j < 8; j++) {
			if (!cok[k][j] || !(ce[k][j] < bestE[j])) continue;
			bestE[j] = ce[k][j];
			bsc[j] = cand[k][0][j];
			bq0[j] = cand[k][1][j];
		}
	}
	int ok[8];
	float d1[8], m1[8];
	for (int j = 0; j < 8; j++) {
		ok[j] = bsc[j] >= 0;
		d1[j] = m1[j] = 0;
		if (ok[j]) {
			d1[j] = bd * (float)bsc[j];
			m1[j] = bdmin * (float)(bsc[j] * bq0[j] / R);
		} else {
			bsc[j] = bq0[j] = 0;
		}
		r->sc[j] = (uint8_t)bsc[j];
		r->m[j] = (uint8_t)(bsc[j] * bq0[j] / R);
	}
	kz_levels(xt, p->nmax, ok, bsc, bq0, d1, m1, r->L);
	return 1;
}

// Whether any of the 256 values x is zero (+0 or -0).
KZ_TARGET static int kz_has_zero(const float *x) {
	const __m256 zero = _mm256_setzero_ps();
	__m256 any = zero;
	for (int i = 0; i < 256; i += 8) any = _mm256_or_ps(any, _mm256_cmp_ps(_mm256_loadu_ps(x + i), zero, _CMP_EQ_OQ));
	return _mm256_movemask_ps(any) != 0;
}

// Plain Go: encodeQ4KKeepZeros (p->nmax 15, blocks of 144 bytes) or
// encodeQ5KKeepZeros (p->nmax 31, blocks of 176 bytes) on nb blocks of
// src, with the format p (ratios, dfac, sfac, grid), for as long as every
// block holds a zero and its search succeeds. It returns nb, or the index
// of the first block that does not, which it leaves unwritten for the Go
// code (the reference encoder).
KZ_TARGET size_t kz_encode_k45(const kz_params *p, const int32_t *ratios, const double *dfac, const double *sfac,
                               const kz_grid *grid, const float *src, uint8_t *dst, size_t nb) {
	const int q5 = p->nmax == 31;
	const size_t bytes = q5 ? 176 : 144;
	const __m256i low4 = _mm256_set1_epi8(15);
	kz_result r;
	for (size_t i = 0; i < nb; i++) {
		const float *x = src + 256 * i;
		uint8_t *b = dst + bytes * i;
		if (!kz_has_zero(x) || !kz_fit45(p, ratios, dfac, sfac, grid, x, &r)) return i;
		// kStoreKZQ45, then the levels, two sub-blocks to a byte (Q4_K,
		// kPackQ5K: their low 4 bits, the fifth in qh).
		b[0] = (uint8_t)r.hd, b[1] = (uint8_t)(r.hd >> 8);
		b[2] = (uint8_t)r.hm, b[3] = (uint8_t)(r.hm >> 8);
		kq_pack_scale_min_k4(b + 4, r.sc, r.m);
		uint8_t *ql = b + (q5 ? 48 : 16);
		__m256i qh = _mm256_setzero_si256();
		for (int n = 0; n < 4; n++) {
			const __m256i lo = _mm256_loadu_si256((const __m256i *)(r.L + 64 * n));
			const __m256i hi = _mm256_loadu_si256((const __m256i *)(r.L + 64 * n + 32));
			// Shifting 16-bit lanes of values below 16 by 4 moves no bit
			// into the next byte.
			_mm256_storeu_si256((__m256i *)(ql + 32 * n),
			                    _mm256_or_si256(_mm256_and_si256(lo, low4), _mm256_slli_epi16(_mm256_and_si256(hi, low4), 4)));
			if (q5) {
				qh = _mm256_or_si256(qh, _mm256_and_si256(_mm256_cmpgt_epi8(lo, low4), _mm256_set1_epi8((char)(1 << (2 * n)))));
				qh = _mm256_or_si256(qh, _mm256_and_si256(_mm256_cmpgt_epi8(hi, low4), _mm256_set1_epi8((char)(2 << (2 * n)))));
			}
		}
		if (q5) _mm256_storeu_si256((__m256i *)(b + 16), qh);
	}
	return nb;
}
