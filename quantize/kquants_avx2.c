//go:build cgo && amd64 && !purego

// AVX2 paths of the Q4_K and Q6_K reference encoders. The reference fits
// each sub-block's scale by an independent search (make_qkx2_quants for the
// 8 sub-blocks of Q4_K, make_qx_quants for the 16 of Q6_K); here each of 8
// lanes runs one sub-block's search, performing exactly the scalar
// operations of the Go code in kquants.go / kquants_q6k.go (and so of
// ggml's C) in the same order: IEEE single-precision adds, multiplies,
// divides and square roots, ties-to-even rounding through the 1.5*2^23
// trick, and per-lane blends where the scalar code branches. The target is
// avx2 without fma, so no multiply-add can be contracted. The per-block
// epilogue (scale quantization, fp16 conversion, requantization, packing)
// is the scalar Go code transcribed, with the requantization 8 values at a
// time. The encoders stop at a block holding a NaN or an infinity and
// return its index; the Go caller encodes that block with the Go code.

#include "quantize_avx2.h"

// Plain Go: for each sub-block j (lane j), kSubblockWeights32 then
// kMakeQkx2x32(x[32j:], w, L[32j:], 15, -1, 0.1, 20), giving scales[j],
// mins[j] and the levels L.
KQ_TARGET static void kq_q4k_fit(const float *x, float *scales, float *mins, uint8_t *L) {
	__m256 xt[32], w[32], lb[32], la[32];
	const __m256i idx = _mm256_setr_epi32(0, 32, 64, 96, 128, 160, 192, 224);
	const __m256 zero = _mm256_setzero_ps();
	for (int i = 0; i < 32; i++) xt[i] = _mm256_i32gather_ps(x + i, idx, 4);
	__m256 sumx2 = zero;
	for (int i = 0; i < 32; i++) sumx2 = _mm256_add_ps(sumx2, _mm256_mul_ps(xt[i], xt[i]));
	__m256 avx = _mm256_sqrt_ps(_mm256_div_ps(sumx2, _mm256_set1_ps(32.f)));
	for (int i = 0; i < 32; i++) w[i] = _mm256_add_ps(avx, kq_abs8(xt[i]));

	__m256 mn = xt[0], mx = xt[0];
	__m256 sumw = w[0];
	__m256 sumx = _mm256_mul_ps(sumw, xt[0]);
	for (int i = 1; i < 32; i++) {
		mn = _mm256_min_ps(xt[i], mn); // x < min ? x : min
		mx = _mm256_max_ps(xt[i], mx); // x > max ? x : max
		sumw = _mm256_add_ps(sumw, w[i]);
		sumx = _mm256_add_ps(sumx, _mm256_mul_ps(w[i], xt[i]));
	}
	mn = _mm256_blendv_ps(mn, zero, _mm256_cmp_ps(mn, zero, _CMP_GT_OQ));
	const __m256 degen = _mm256_cmp_ps(mx, mn, _CMP_EQ_OQ);
	const __m256 mn0 = mn;
	const __m256i lmax = _mm256_set1_epi32(15), lmin = _mm256_setzero_si256();

	__m256 rng = _mm256_sub_ps(mx, mn);
	__m256 iscale = _mm256_div_ps(_mm256_set1_ps(15.f), rng);
	__m256 scale = _mm256_div_ps(_mm256_set1_ps(1.f), iscale);
	__m256 best = zero;
	for (int i = 0; i < 32; i++) {
		__m256i l = kq_nearest8(_mm256_mul_ps(iscale, _mm256_sub_ps(xt[i], mn)));
		l = _mm256_max_epi32(lmin, _mm256_min_epi32(lmax, l));
		lb[i] = _mm256_cvtepi32_ps(l);
		__m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, lb[i]), mn), xt[i]);
		best = _mm256_add_ps(best, _mm256_mul_ps(w[i], _mm256_mul_ps(diff, diff)));
	}
	for (int is = 0; is <= 20; is++) {
		const float c = -1.f + 0.1f * (float)is + 15.f;
		iscale = _mm256_div_ps(_mm256_set1_ps(c), rng);
		__m256 suml = zero, suml2 = zero, sumxl = zero;
		for (int i = 0; i < 32; i++) {
			__m256i l = kq_nearest8(_mm256_mul_ps(iscale, _mm256_sub_ps(xt[i], mn)));
			l = _mm256_max_epi32(lmin, _mm256_min_epi32(lmax, l));
			la[i] = _mm256_cvtepi32_ps(l);
			__m256 wl = _mm256_mul_ps(w[i], la[i]);
			suml = _mm256_add_ps(suml, wl);
			suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(wl, la[i]));
			sumxl = _mm256_add_ps(sumxl, _mm256_mul_ps(wl, xt[i]));
		}
		__m256 D = _mm256_sub_ps(_mm256_mul_ps(sumw, suml2), _mm256_mul_ps(suml, suml));
		__m256 dpos = _mm256_cmp_ps(D, zero, _CMP_GT_OQ);
		if (_mm256_movemask_ps(dpos) == 0) continue;
		__m256 ts = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sumw, sumxl), _mm256_mul_ps(sumx, suml)), D);
		__m256 tm = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(suml2, sumx), _mm256_mul_ps(suml, sumxl)), D);
		__m256 mpos = _mm256_cmp_ps(tm, zero, _CMP_GT_OQ);
		tm = _mm256_blendv_ps(tm, zero, mpos);
		ts = _mm256_blendv_ps(ts, _mm256_div_ps(sumxl, suml2), mpos);
		__m256 cur = zero;
		for (int i = 0; i < 32; i++) {
			__m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(ts, la[i]), tm), xt[i]);
			cur = _mm256_add_ps(cur, _mm256_mul_ps(w[i], _mm256_mul_ps(diff, diff)));
		}
		__m256 upd = _mm256_and_ps(dpos, _mm256_cmp_ps(cur, best, _CMP_LT_OQ));
		if (_mm256_movemask_ps(upd) == 0) continue;
		for (int i = 0; i < 32; i++) lb[i] = _mm256_blendv_ps(lb[i], la[i], upd);
		best = _mm256_blendv_ps(best, cur, upd);
		scale = _mm256_blendv_ps(scale, ts, upd);
		mn = _mm256_blendv_ps(mn, tm, upd);
		rng = _mm256_sub_ps(mx, mn);
	}
	// Lanes whose values are all equal return 0 and -min, with levels 0.
	const __m256 sign = _mm256_set1_ps(-0.f);
	scale = _mm256_blendv_ps(scale, zero, degen);
	__m256 m = _mm256_blendv_ps(_mm256_xor_ps(mn, sign), _mm256_xor_ps(mn0, sign), degen);
	_mm256_storeu_ps(scales, scale);
	_mm256_storeu_ps(mins, m);
	float lt[32][8];
	for (int i = 0; i < 32; i++) _mm256_storeu_ps(lt[i], _mm256_blendv_ps(lb[i], zero, degen));
	for (int j = 0; j < 8; j++) {
		for (int i = 0; i < 32; i++) L[32 * j + i] = (uint8_t)lt[i][j];
	}
}

// Plain Go: encodeQ4KBlock.
KQ_TARGET static void kq_q4k_block(const float *x, uint8_t *y) {
	uint8_t L[256];
	float scales[8], mins[8];
	kq_q4k_fit(x, scales, mins, L);
	float max_scale = 0, max_min = 0;
	for (int j = 0; j < 8; j++) {
		if (scales[j] > max_scale) max_scale = scales[j];
		if (mins[j] > max_min) max_min = mins[j];
	}
	float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
	float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
	uint8_t ls[8], lm[8];
	for (int j = 0; j < 8; j++) {
		ls[j] = (uint8_t)kq_nearest(inv_scale * scales[j]);
		lm[j] = (uint8_t)kq_nearest(inv_min * mins[j]);
		if (ls[j] > 63) ls[j] = 63;
		if (lm[j] > 63) lm[j] = 63;
	}
	uint8_t *sb = y + 4;
	kq_pack_scale_min_k4(sb, ls, lm);
	uint16_t hd = kq_f2h(max_scale / 63.f), hm = kq_f2h(max_min / 63.f);
	y[0] = (uint8_t)hd; y[1] = (uint8_t)(hd >> 8);
	y[2] = (uint8_t)hm; y[3] = (uint8_t)(hm >> 8);
	float fd = kq_h2f(hd), fm = kq_h2f(hm);
	const __m256i lmax = _mm256_set1_epi32(15), lmin = _mm256_setzero_si256();
	for (int j = 0; j < 8; j++) {
		uint8_t sc, m;
		if (j < 4) {
			sc = sb[j] & 63; m = sb[j + 4] & 63;
		} else {
			sc = (sb[j + 4] & 0xF) | ((sb[j - 4] >> 6) << 4);
			m = (sb[j + 4] >> 4) | ((sb[j] >> 6) << 4);
		}
		float d = fd * (float)sc;
		if (d == 0) continue;
		__m256 vd = _mm256_set1_ps(d), vdm = _mm256_set1_ps(fm * (float)m);
		for (int i = 0; i < 32; i += 8) {
			__m256 v = _mm256_loadu_ps(x + 32 * j + i);
			__m256i l = kq_nearest8(_mm256_div_ps(_mm256_add_ps(v, vdm), vd));
			l = _mm256_max_epi32(lmin, _mm256_min_epi32(lmax, l));
			int32_t t[8];
			_mm256_storeu_si256((__m256i *)t, l);
			for (int k = 0; k < 8; k++) L[32 * j + i + k] = (uint8_t)t[k];
		}
	}
	uint8_t *q = y + 16;
	for (int j = 0; j < 4; j++) {
		for (int l = 0; l < 32; l++) q[32 * j + l] = (uint8_t)(L[64 * j + l] | (L[64 * j + l + 32] << 4));
	}
}

// Encodes nb Q4_K blocks (144 bytes each) from src (256 values each);
// returns nb, or the index of the first block holding a NaN or an infinity,
// which it leaves unwritten.
size_t kq_encode_q4k(const float *src, uint8_t *dst, size_t nb) {
	for (size_t i = 0; i < nb; i++) {
		if (kq_nonfinite(src + 256 * i, 256)) return i;
		kq_q4k_block(src + 256 * i, dst + 144 * i);
	}
	return nb;
}

// Plain Go: for each sub-block of 16 (lane j of group g is sub-block
// 8g+j), kMakeQx1(x[16(8g+j):], L[16(8g+j):], 32), giving scales.
KQ_TARGET static void kq_q6k_fit8(const float *x, float *scales, int8_t *L) {
	__m256 xt[16];
	__m256i lb[16], la[16];
	const __m256i idx = _mm256_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112);
	const __m256 zero = _mm256_setzero_ps();
	const __m256i lmin = _mm256_set1_epi32(-32), lmax = _mm256_set1_epi32(31);
	for (int i = 0; i < 16; i++) xt[i] = _mm256_i32gather_ps(x + i, idx, 4);
	__m256 amax = zero, mx = zero;
	for (int i = 0; i < 16; i++) {
		__m256 ax = kq_abs8(xt[i]);
		__m256 gt = _mm256_cmp_ps(ax, amax, _CMP_GT_OQ);
		amax = _mm256_blendv_ps(amax, ax, gt);
		mx = _mm256_blendv_ps(mx, xt[i], gt);
	}
	const __m256 small = _mm256_cmp_ps(amax, _mm256_set1_ps(1e-15f), _CMP_LT_OQ);
	__m256 iscale = _mm256_div_ps(_mm256_set1_ps(-32.f), mx);
	__m256 sumlx = zero, suml2 = zero;
	for (int i = 0; i < 16; i++) {
		__m256i l = kq_nearest8(_mm256_mul_ps(iscale, xt[i]));
		l = _mm256_max_epi32(lmin, _mm256_min_epi32(lmax, l));
		lb[i] = l;
		__m256 fl = _mm256_cvtepi32_ps(l);
		__m256 w = _mm256_mul_ps(xt[i], xt[i]);
		sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(w, xt[i]), fl));
		suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w, fl), fl));
	}
	__m256 scale = _mm256_blendv_ps(zero, _mm256_div_ps(sumlx, suml2), _mm256_cmp_ps(suml2, zero, _CMP_NEQ_UQ));
	__m256 best = _mm256_mul_ps(scale, sumlx);
	for (int is = -9; is <= 9; is++) {
		if (is == 0) continue;
		const float c = -(32.f + 0.1f * (float)is);
		iscale = _mm256_div_ps(_mm256_set1_ps(c), mx);
		sumlx = zero; suml2 = zero;
		for (int i = 0; i < 16; i++) {
			__m256i l = kq_nearest8(_mm256_mul_ps(iscale, xt[i]));
			l = _mm256_max_epi32(lmin, _mm256_min_epi32(lmax, l));
			la[i] = l;
			__m256 fl = _mm256_cvtepi32_ps(l);
			__m256 w = _mm256_mul_ps(xt[i], xt[i]);
			sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(w, xt[i]), fl));
			suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w, fl), fl));
		}
		__m256 upd = _mm256_and_ps(_mm256_cmp_ps(suml2, zero, _CMP_GT_OQ),
			_mm256_cmp_ps(_mm256_mul_ps(sumlx, sumlx), _mm256_mul_ps(best, suml2), _CMP_GT_OQ));
		if (_mm256_movemask_ps(upd) == 0) continue;
		__m256i updi = _mm256_castps_si256(upd);
		for (int i = 0; i < 16; i++) lb[i] = _mm256_blendv_epi8(lb[i], la[i], updi);
		__m256 ns = _mm256_div_ps(sumlx, suml2);
		scale = _mm256_blendv_ps(scale, ns, upd);
		best = _mm256_blendv_ps(best, _mm256_mul_ps(ns, sumlx), upd);
	}
	// Lanes below GROUP_MAX_EPS return 0 with levels 0 (not 32).
	scale = _mm256_blendv_ps(scale, zero, small);
	_mm256_storeu_ps(scales, scale);
	const __m256i smalli = _mm256_castps_si256(small), off = _mm256_set1_epi32(32);
	int32_t lt[16][8];
	for (int i = 0; i < 16; i++) {
		__m256i v = _mm256_add_epi32(lb[i], off);
		_mm256_storeu_si256((__m256i *)lt[i], _mm256_andnot_si256(smalli, v));
	}
	for (int j = 0; j < 8; j++) {
		for (int i = 0; i < 16; i++) L[16 * j + i] = (int8_t)lt[i][j];
	}
}

// Plain Go: encodeQ6KBlock.
KQ_TARGET static void kq_q6k_block(const float *x, uint8_t *y) {
	int8_t L[256];
	float scales[16];
	kq_q6k_fit8(x, scales, L);
	kq_q6k_fit8(x + 128, scales + 8, L + 128);
	float max_scale = 0, max_abs = 0;
	for (int ib = 0; ib < 16; ib++) {
		float as = kq_bits_f(kq_f_bits(scales[ib]) & 0x7fffffffu);
		if (as > max_abs) {
			max_abs = as;
			max_scale = scales[ib];
		}
	}
	if (max_abs < 1e-15f) {
		memset(y, 0, 210);
		uint16_t h = kq_f2h(0.f);
		y[208] = (uint8_t)h; y[209] = (uint8_t)(h >> 8);
		return;
	}
	float iscale = -128.f / max_scale;
	uint16_t hd = kq_f2h(1 / iscale);
	y[208] = (uint8_t)hd; y[209] = (uint8_t)(hd >> 8);
	uint8_t *sb = y + 192;
	for (int ib = 0; ib < 16; ib++) {
		int32_t l = kq_nearest(iscale * scales[ib]);
		if (l > 127) l = 127;
		sb[ib] = (uint8_t)(int8_t)l;
	}
	float fd = kq_h2f(hd);
	const __m256i lmin = _mm256_set1_epi32(-32), lmax = _mm256_set1_epi32(31), off = _mm256_set1_epi32(32);
	for (int j = 0; j < 16; j++) {
		float d = fd * (float)(int8_t)sb[j];
		if (d == 0) continue;
		__m256 vd = _mm256_set1_ps(d);
		for (int i = 0; i < 16; i += 8) {
			__m256i l = kq_nearest8(_mm256_div_ps(_mm256_loadu_ps(x + 16 * j + i), vd));
			l = _mm256_add_epi32(_mm256_max_epi32(lmin, _mm256_min_epi32(lmax, l)), off);
			int32_t t[8];
			_mm256_storeu_si256((__m256i *)t, l);
			for (int k = 0; k < 8; k++) L[16 * j + i + k] = (int8_t)t[k];
		}
	}
	for (int n = 0; n < 2; n++) {
		uint8_t *ql = y + 64 * n, *qh = y + 128 + 32 * n;
		for (int l = 0; l < 32; l++) {
			int i = 128 * n + l;
			uint8_t q1 = (uint8_t)L[i], q2 = (uint8_t)L[i + 32], q3 = (uint8_t)L[i + 64], q4 = (uint8_t)L[i + 96];
			ql[l] = (uint8_t)((q1 & 0xF) | ((q3 & 0xF) << 4));
			ql[l + 32] = (uint8_t)((q2 & 0xF) | ((q4 & 0xF) << 4));
			qh[l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
		}
	}
}

// Encodes nb Q6_K blocks (210 bytes each) from src (256 values each);
// returns nb, or the index of the first block holding a NaN or an infinity,
// which it leaves unwritten.
size_t kq_encode_q6k(const float *src, uint8_t *dst, size_t nb) {
	for (size_t i = 0; i < nb; i++) {
		if (kq_nonfinite(src + 256 * i, 256)) return i;
		kq_q6k_block(src + 256 * i, dst + 210 * i);
	}
	return nb;
}
