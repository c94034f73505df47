//go:build cgo && amd64 && !purego

// AVX2 path of the zero-preserving Q4_K/Q5_K search: kKeepZerosFit
// (kquants_keepzeros.go) for the formats of 8 sub-blocks of 32 values, in
// which lane j of every vector is sub-block j. The loops over a sub-block's
// values (the sum of squares and range, every least-squares pass of
// kKZFitSub, kKZExact's errors) and kKZTotal's predicted errors run for the
// 8 sub-blocks at once; the per-sub-block decisions, kKZScales and kKZPick
// are the scalar Go code transcribed. Each
// operation is the Go code's, in its order and precision (float32 or
// float64), rounded one at a time: the target is avx2 without fma, so no
// multiply-add can be contracted.
//
// Where the Go code loops over a sub-block's survivors (its non-zero
// values), the vectors run over all 32 values: a zero adds exactly +0 to
// every sum (no sum is ever -0) and level 0 to every count, so the sums are
// the same. kKZExact stops once the error reaches the best error so far;
// here the sum runs to the end, which changes no decision: the terms are
// never negative, so a sum that reached the limit stays at or above it.

#include "quantize_avx2.h"
#include "kquants_keepzeros_avx2.h"

#include <math.h>

// The search's functions also use F16C, for kKZScales's conversions
// between float and half (vcvtps2ph rounds to nearest even, as
// floatToHalf does; the two differ only on NaN, which never reaches them).
#define KZ_TARGET __attribute__((target("avx2,f16c")))

KZ_TARGET static inline uint16_t kz_f2h(float f) { return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }
KZ_TARGET static inline float kz_h2f(uint16_t h) { return _cvtsh_ss(h); }

// The kKZSubFit of each of the 8 sub-blocks, lane by lane: candidate c
// of sub-block j is [c][j], for c < nc[j] <= 2*qspan <= KZ_MAXC (unused
// slots hold zeros); maxnc is the largest nc.
#define KZ_MAXC 4
typedef struct {
	int32_t maxnc, nc[8], q0[KZ_MAXC][8];
	double A[8], s[KZ_MAXC][8], C[KZ_MAXC][8], emin[KZ_MAXC][8];
} kz_lanes;

// Plain Go, for each lane j: the pass closure of kKZFitSub at step s[j]:
// is = float32(1/s[j]); over the values v, k = max(kmin[j], min(kmax[j],
// kNearestInt(v*is))), B[j] += float64(v)*float64(k), ci += k*k; then
// C[j] = float64(ci).
KZ_TARGET static void kz_pass(const __m256 *xt, const double *s, const int32_t *kmin, const int32_t *kmax,
                              double *B, double *C) {
	const __m256d one = _mm256_set1_pd(1.0);
	__m128 is0 = _mm256_cvtpd_ps(_mm256_div_pd(one, _mm256_loadu_pd(s)));
	__m128 is1 = _mm256_cvtpd_ps(_mm256_div_pd(one, _mm256_loadu_pd(s + 4)));
	const __m256 is = _mm256_set_m128(is1, is0);
	const __m256i lo = _mm256_loadu_si256((const __m256i *)kmin), hi = _mm256_loadu_si256((const __m256i *)kmax);
	__m256d b0 = _mm256_setzero_pd(), b1 = _mm256_setzero_pd();
	__m256i ci = _mm256_setzero_si256();
	for (int i = 0; i < 32; i++) {
		const __m256 v = xt[i];
		const __m256i k = _mm256_max_epi32(lo, _mm256_min_epi32(hi, kq_nearest8(_mm256_mul_ps(v, is))));
		b0 = _mm256_add_pd(b0, _mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)),
		                                     _mm256_cvtepi32_pd(_mm256_castsi256_si128(k))));
		b1 = _mm256_add_pd(b1, _mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)),
		                                     _mm256_cvtepi32_pd(_mm256_extracti128_si256(k, 1))));
		ci = _mm256_add_epi32(ci, _mm256_mullo_epi32(k, k));
	}
	_mm256_storeu_pd(B, b0);
	_mm256_storeu_pd(B + 4, b1);
	_mm256_storeu_pd(C, _mm256_cvtepi32_pd(_mm256_castsi256_si128(ci)));
	_mm256_storeu_pd(C + 4, _mm256_cvtepi32_pd(_mm256_extracti128_si256(ci, 1)));
}

// kz_keep takes the fit (B, C) of error e when e is below the best so far,
// be, and reports whether it did.
static inline int kz_keep(double e, double B, double C, double *be, double *bB, double *bC) {
	if (!(e < *be)) return 0;
	*be = e;
	*bB = B;
	*bC = C;
	return 1;
}

// Plain Go: kKZFitSub for the 8 sub-blocks (transposed in xt), then the
// largest step of the sub-blocks' best candidates, which it returns (smax).
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
	memset(fit, 0, sizeof *fit);
	for (int j = 0; j < 8; j++) {
		if (n[j] == 0) continue;
		fit->A[j] = A[j];
		fl[j] = (double)(-los[j]);
		fh[j] = (double)his[j];
		qf[j] = (int32_t)((double)nmax * fl[j] / (fl[j] + fh[j]));
	}
	for (int qi = 0; qi < 2 * p->qspan; qi++) {
		int valid[8], active[8];
		int32_t q0[8], kmin[8], kmax[8];
		double s0[8], s[8], B[8], C[8], be[8], bB[8], bC[8];
		int any = 0;
		for (int j = 0; j < 8; j++) {
			valid[j] = 0;
			kmin[j] = kmax[j] = 0;
			s0[j] = 1;
			if (n[j] == 0) continue;
			q0[j] = qf[j] + 1 - p->qspan + qi;
			if (q0[j] < 0 || q0[j] > nmax) continue;
			// cover(q0)
			double c = 0;
			int inf = 0;
			if (fl[j] > 0) {
				if (q0[j] == 0) inf = 1;
				else c = fl[j] / (double)q0[j];
			}
			if (!inf && fh[j] > 0) {
				if (q0[j] == nmax) inf = 1;
				else {
					double t = fh[j] / (double)(nmax - q0[j]);
					c = t > c ? t : c;
				}
			}
			if (inf || !(c > 0)) continue;
			valid[j] = 1;
			any = 1;
			s0[j] = c;
			kmin[j] = -q0[j];
			kmax[j] = nmax - q0[j];
			be[j] = INFINITY;
			bB[j] = bC[j] = 0;
		}
		if (!any) continue;
		for (int fi = 0; fi < p->nsfac; fi++) {
			for (int j = 0; j < 8; j++) s[j] = valid[j] ? s0[j] * sfac[fi] : 1;
			kz_pass(xt, s, kmin, kmax, B, C);
			for (int j = 0; j < 8; j++) {
				if (valid[j] && C[j] > 0 && B[j] > 0) kz_keep(A[j] - B[j] * B[j] / C[j], B[j], C[j], &be[j], &bB[j], &bC[j]);
			}
		}
		any = 0;
		for (int j = 0; j < 8; j++) {
			if (valid[j] && isinf(be[j])) valid[j] = 0;
			active[j] = valid[j];
			any |= active[j];
		}
		for (int it = 0; it < p->refine && any; it++) {
			for (int j = 0; j < 8; j++) s[j] = active[j] ? bB[j] / bC[j] : 1;
			kz_pass(xt, s, kmin, kmax, B, C);
			any = 0;
			for (int j = 0; j < 8; j++) {
				if (!active[j]) continue;
				if (!(C[j] > 0 && B[j] > 0)) {
					active[j] = 0;
					continue;
				}
				if (kz_keep(A[j] - B[j] * B[j] / C[j], B[j], C[j], &be[j], &bB[j], &bC[j])) any = 1;
				else active[j] = 0;
			}
		}
		for (int j = 0; j < 8; j++) {
			if (!valid[j]) continue;
			const int c = fit->nc[j]++;
			fit->q0[c][j] = q0[j];
			fit->s[c][j] = bB[j] / bC[j];
			fit->C[c][j] = bC[j];
			fit->emin[c][j] = be[j];
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

static void kz_grid_lanes(const kz_lanes *l, const kz_grid *grid, int32_t ri, kz_lane_grid *lg) {
	lg->ri = ri;
	for (int c = 0; c < l->maxnc; c++) {
		for (int j = 0; j < 8; j++) {
			const kz_grid *gr = &grid[l->q0[c][j]];
			const int in = c < l->nc[j] && gr->hi >= gr->g;
			lg->ok[c][j] = in ? ~(uint64_t)0 : 0;
			lg->g[c][j] = in ? (double)gr->g : 1;
			lg->hi[c][j] = in ? (double)gr->hi : 1;
			lg->invg[c][j] = in ? gr->invg : 1;
		}
	}
}

// Plain Go: kKZTotal, 4 sub-blocks per vector, with the grid entries of
// ratio lg->ri. int32(t) is t truncated, and the codes stay small
// integers, exact in float64, so the scale-code arithmetic runs in float64
// too.
KZ_TARGET static double kz_total(const kz_lanes *l, const kz_lane_grid *lg, double d, double limit) {
	const double id = 1 / d;
	const __m256d vd = _mm256_set1_pd(d), vid = _mm256_set1_pd(id), half = _mm256_set1_pd(0.5), one = _mm256_set1_pd(1);
	__m256d e[2] = {_mm256_loadu_pd(l->A), _mm256_loadu_pd(l->A + 4)};
	for (int c = 0; c < l->maxnc; c++) {
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
	double es[8], tot = 0;
	_mm256_storeu_pd(es, e[0]);
	_mm256_storeu_pd(es + 4, e[1]);
	for (int j = 0; j < 8 && tot < limit; j++) tot += es[j];
	return tot;
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

// Plain Go: kKZScales.
KZ_TARGET static int kz_scales(float target, int32_t R, float *d, float *dmin) {
	uint16_t h = kz_f2h(target);
	if (h == 0) h = 1;
	for (unsigned drop = 0; drop <= 6; drop++) {
		uint16_t hh = h;
		if (drop > 0) {
			uint16_t mask = (uint16_t)((1u << drop) - 1);
			hh = (uint16_t)((uint16_t)(h + (mask >> 1) + 1) & ~mask);
			if ((hh & 0x7C00) == 0x7C00) hh = (uint16_t)(h & ~mask);
		}
		*d = kz_h2f(hh);
		*dmin = kz_h2f(kz_f2h(*d * (float)R));
		if (*d > 0 && *dmin == *d * (float)R && *dmin < 65504) return 1;
	}
	*d = *dmin = 0;
	return 0;
}

// Plain Go, for each lane j with ok[j]: kKZExact on sub-block j with scale
// code sc[j] and zero level q0[j] (m[j] = sc*q0/R), d1 = d*sc, m1 = dmin*m:
// the error e[j], summed to the end, and, when L is not NULL, the levels,
// into L[32j:].
KZ_TARGET static void kz_exact(const __m256 *xt, int32_t nmax, const int *ok, const int32_t *sc, const int32_t *q0,
                               const float *d1, const float *m1, float *e, uint8_t *L) {
	float id1[8];
	int32_t zs[8];
	for (int j = 0; j < 8; j++) {
		zs[j] = ok[j] && sc[j] == 0 ? -1 : 0;
		id1[j] = ok[j] && sc[j] != 0 ? 1 / d1[j] : 1;
	}
	const __m256 zero = _mm256_setzero_ps();
	const __m256 vd1 = _mm256_loadu_ps(d1), vm1 = _mm256_loadu_ps(m1), vid1 = _mm256_loadu_ps(id1);
	const __m256i vq0 = _mm256_loadu_si256((const __m256i *)q0), lmax = _mm256_set1_epi32(nmax);
	const __m256i lmin = _mm256_setzero_si256(), zsc = _mm256_loadu_si256((const __m256i *)zs);
	__m256 e0 = zero, e1 = zero;
	int32_t lt[32][8];
	for (int i = 0; i < 32; i++) {
		const __m256 v = xt[i];
		e0 = _mm256_add_ps(e0, _mm256_mul_ps(v, v));
		const __m256 nz = _mm256_cmp_ps(v, zero, _CMP_NEQ_OQ);
		__m256i q = kq_nearest8(_mm256_mul_ps(_mm256_add_ps(v, vm1), vid1));
		q = _mm256_max_epi32(lmin, _mm256_min_epi32(lmax, q));
		const __m256 y = _mm256_sub_ps(_mm256_mul_ps(vd1, _mm256_cvtepi32_ps(q)), vm1);
		const __m256 diff = _mm256_sub_ps(v, y);
		e1 = _mm256_blendv_ps(e1, _mm256_add_ps(e1, _mm256_mul_ps(diff, diff)), nz);
		if (L) {
			q = _mm256_blendv_epi8(vq0, q, _mm256_castps_si256(nz));
			_mm256_storeu_si256((__m256i *)lt[i], _mm256_andnot_si256(zsc, q));
		}
	}
	if (e) _mm256_storeu_ps(e, _mm256_blendv_ps(e1, e0, _mm256_castsi256_ps(zsc)));
	if (!L) return;
	for (int j = 0; j < 8; j++) {
		if (!ok[j]) continue;
		for (int i = 0; i < 32; i++) L[32 * j + i] = (uint8_t)lt[i][j];
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

// Plain Go: the try closure of kKeepZerosFit.
KZ_TARGET static double kz_try(kz_search *st, int ri, double fac) {
	float d, dmin;
	if (!kz_scales((float)(st->smax / (double)st->p->scmax * fac), st->ratios[ri], &d, &dmin)) return INFINITY;
	if (st->lg->ri != ri) kz_grid_lanes(st->lanes, st->grid + 32 * ri, ri, st->lg);
	double tot = kz_total(st->lanes, st->lg, (double)d, st->best);
	if (tot < st->best) {
		st->best = tot;
		st->bd = d;
		st->bdmin = dmin;
		st->bri = ri;
	}
	return tot;
}

// kz_fit45 is kKeepZerosFit for a format of 8 sub-blocks of 32 (Q4_K,
// Q5_K) on the 256 values x; it returns 0 where the Go code returns false.
// grid holds p->nratios rows of 32 entries.
KZ_TARGET int kz_fit45(const kz_params *p, const int32_t *ratios, const double *dfac, const double *sfac,
                       const kz_grid *grid, const float *x, kz_result *r) {
	if (kq_nonfinite(x, 256)) return 0;
	__m256 xt[32];
	const __m256i idx = _mm256_setr_epi32(0, 32, 64, 96, 128, 160, 192, 224);
	for (int i = 0; i < 32; i++) xt[i] = _mm256_i32gather_ps(x + i, idx, 4);
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
	for (int ri = 0; ri < p->nratios; ri++) {
		double e = INFINITY;
		for (int fi = 0; fi < 2 && fi < p->ndfac; fi++) {
			double t = kz_try(&st, ri, dfac[fi]);
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
	for (int k = 0; k < 2; k++) {
		if (rbi[k] < 0) continue;
		for (int fi = 2; fi < p->ndfac; fi++) kz_try(&st, rbi[k], dfac[fi]);
	}
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
	// The candidates' errors first; the levels of each lane's winner
	// after, computed again as they were for its error.
	for (int k = 0; k < 3; k++) {
		int ok[8], any = 0;
		float d1[8], m1[8], e[8];
		for (int j = 0; j < 8; j++) {
			const int32_t sc = cand[k][0][j], q0 = cand[k][1][j];
			ok[j] = 0;
			d1[j] = m1[j] = 0;
			if (sc < 0) continue;
			const int32_t m = sc * q0 / R;
			if (m * R != sc * q0 || m > p->mmax || sc > p->scmax) continue;
			d1[j] = bd * (float)sc;
			m1[j] = bdmin * (float)m;
			const float z = d1[j] * (float)q0;
			if (z - m1[j] != 0) continue;
			ok[j] = 1;
			any = 1;
		}
		if (!any) continue;
		kz_exact(xt, p->nmax, ok, cand[k][0], cand[k][1], d1, m1, e, NULL);
		for (int j = 0; j < 8; j++) {
			if (!ok[j] || !(e[j] < bestE[j])) continue;
			bestE[j] = e[j];
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
			memset(r->L + 32 * j, 0, 32);
		}
		r->sc[j] = (uint8_t)bsc[j];
		r->m[j] = (uint8_t)(bsc[j] * bq0[j] / R);
	}
	kz_exact(xt, p->nmax, ok, bsc, bq0, d1, m1, NULL, r->L);
	return 1;
}
