package llamacpp

import (
	"math"
	"slices"
)

// The perplexity arithmetic below follows llama.cpp's tools/perplexity (the
// release named in SupportedRelease) operation by operation (float32 logit
// differences, float32 exponentials summed in float64), so the perplexity
// agrees with llama-perplexity's to the printed digits. The KL-divergence
// statistics use llama-perplexity's definitions, but on the base model's
// exact log-probabilities, held for one chunk group while every model is
// evaluated in lockstep: llama-perplexity reads them back from a 16-bit
// encoding clipped 16 nats below the top token (encodeBaseRow, still written
// for --save-base-logits), which biases its figures on small vocabularies.

// expf is exp in float32, as C's expf.
func expf(x float32) float32 { return float32(math.Exp(float64(x))) }

// rowMax returns the maximum of row and its first index.
func rowMax(row []float32) (float32, int) {
	m, im := row[0], 0
	for i, v := range row[1:] {
		if v > m {
			m, im = v, i+1
		}
	}
	return m, im
}

// sumExp returns sum(expf(row[i]-max)) accumulated in float64.
func sumExp(row []float32, max float32) float64 {
	s := 0.0
	for _, v := range row {
		s += float64(expf(v - max))
	}
	return s
}

// rowNLL returns -log softmax(row)[tok] as llama-perplexity's perplexity
// pass computes it.
func rowNLL(row []float32, tok int32) float64 {
	m, _ := rowMax(row)
	return -(float64(row[tok]-m) - math.Log(sumExp(row, m)))
}

// baseRowLen is the number of uint16 per token in a base log-probability
// record: two float32 (scale, minimum log-probability) and the vocabulary
// rounded up to an even count.
func baseRowLen(nVocab int) int { return 2*((nVocab+1)/2) + 4 }

// nearestInt rounds as llama.cpp's nearest_int (valid for |v| < 2^22).
func nearestInt(v float32) int32 {
	f := v + 12582912
	return int32(math.Float32bits(f)&0x007fffff) - 0x00400000
}

// encodeBaseRow writes the base model's log-probabilities of one token into
// dst (baseRowLen(len(row)) values) and returns the row's NLL for tok.
func encodeBaseRow(row []float32, dst []uint16, tok int32) float64 {
	maxL, minL := row[0], row[0]
	for _, v := range row[1:] {
		maxL = max(maxL, v)
		minL = min(minL, v)
	}
	minL = max(minL, maxL-16)
	s := sumExp(row, maxL)
	logSumExp := float32(math.Log(s))
	minLogProb := minL - maxL - logSumExp
	scale := (maxL - minL) / 65535
	dst[0], dst[1] = uint16(math.Float32bits(scale)), uint16(math.Float32bits(scale)>>16)
	dst[2], dst[3] = uint16(math.Float32bits(minLogProb)), uint16(math.Float32bits(minLogProb)>>16)
	lp := dst[4 : 4+len(row)]
	if scale != 0 {
		inv := 1 / scale
		for i, v := range row {
			if v > minL {
				lp[i] = uint16(nearestInt(inv * (v - minL)))
			} else {
				lp[i] = 0
			}
		}
	} else {
		clear(lp)
	}
	return float64(maxL + logSumExp - row[tok])
}

// logProbs writes log softmax(row) into dst, rounded to float32, and
// returns the row's argmax (first on ties) and the perplexity pass's NLL of
// tok. The same code path serves the base and the compared model, so a
// model compared with itself has a divergence of exactly zero.
func logProbs(row, dst []float32, tok int32) (argmax int, nll float64) {
	m, im := rowMax(row)
	s := sumExp(row, m)
	lse := math.Log(s)
	for i, v := range row {
		dst[i] = float32(float64(v-m) - lse)
	}
	return im, -(float64(row[tok]-m) - lse)
}

// baseRow is the base model's distribution for one scored token.
type baseRow struct {
	lp     []float32 // log-probabilities
	p      []float32 // probabilities, exp(lp)
	argmax int
}

// setBase fills b from the base model's logits row.
func (b *baseRow) set(row []float32, tok int32) float64 {
	im, nll := logProbs(row, b.lp, tok)
	for i, v := range b.lp {
		b.p[i] = float32(math.Exp(float64(v)))
	}
	b.argmax = im
	return nll
}

// kldAcc accumulates the sums of llama-perplexity's KL-divergence
// statistics.
type kldAcc struct {
	sumNLL, sumNLL2, sumNLLBase, sumNLLBase2, sumNLLNLLBase float64
	sumKLD, sumKLD2                                         float64
	sumPDiff, sumPDiff2, sumPDiff4                          float64
	sameTop, count                                          int
}

func (a *kldAcc) add(b *kldAcc) {
	a.sumNLL += b.sumNLL
	a.sumNLL2 += b.sumNLL2
	a.sumNLLBase += b.sumNLLBase
	a.sumNLLBase2 += b.sumNLLBase2
	a.sumNLLNLLBase += b.sumNLLNLLBase
	a.sumKLD += b.sumKLD
	a.sumKLD2 += b.sumKLD2
	a.sumPDiff += b.sumPDiff
	a.sumPDiff2 += b.sumPDiff2
	a.sumPDiff4 += b.sumPDiff4
	a.sameTop += b.sameTop
	a.count += b.count
}

// kldRow scores one token of a model (logits row) against the base
// distribution: it adds to acc and returns the token's KL divergence
// KL(base || model) in nats, the change of the correct token's probability
// (model minus base), and the perplexity pass's NLL of the token. scratch
// holds len(row) floats.
func kldRow(row []float32, base *baseRow, tok int32, scratch []float32, acc *kldAcc) (kld float64, pDiff float32, nllPPL float64) {
	im, nllPPL := logProbs(row, scratch, tok)
	nll := -float64(scratch[tok])
	nllBase := -float64(base.lp[tok])
	acc.sumNLL += nll
	acc.sumNLL2 += nll * nll
	acc.sumNLLBase += nllBase
	acc.sumNLLBase2 += nllBase * nllBase
	acc.sumNLLNLLBase += nll * nllBase
	for i, pb := range base.p {
		kld += float64(pb) * (float64(base.lp[i]) - float64(scratch[i]))
	}
	acc.sumKLD += kld
	acc.sumKLD2 += kld * kld
	acc.count++
	if im == base.argmax {
		acc.sameTop++
	}
	d := math.Exp(-nll) - math.Exp(-nllBase)
	pDiff = float32(d)
	acc.sumPDiff += d
	acc.sumPDiff2 += d * d
	acc.sumPDiff4 += d * d * d * d
	return kld, pDiff, nllPPL
}

// meanErr is llama-perplexity's mean_and_uncertainty.
func meanErr(sum, sum2 float64, count int) (float64, float64) {
	if count < 1 {
		return 0, 0
	}
	n := float64(count)
	f := sum / n
	df := sum2/n - f*f
	if df > 0 && count > 10 {
		df = math.Sqrt(df / (n - 1))
	} else {
		df = 0
	}
	return f, df
}

// covariance is llama-perplexity's covariance of the two NLL series.
func covariance(sa, sb, sab float64, count int) float64 {
	if count < 10 {
		return 0
	}
	n := float64(count)
	return (sab/n - (sa/n)*(sb/n)) / (n - 1)
}

// percentile interpolates linearly in sorted values, as llama-perplexity.
func percentile(sorted []float32, fraction float32) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	if fraction <= 0 {
		return float64(sorted[0])
	}
	if fraction >= 1 {
		return float64(sorted[len(sorted)-1])
	}
	p := fraction * float32(len(sorted)-1)
	ip := int(p)
	p -= float32(ip)
	return float64((1-p)*sorted[ip] + p*sorted[min(ip+1, len(sorted)-1)])
}

// median of sorted values, as llama-perplexity (float32 midpoint).
func median(sorted []float32) float64 {
	n := len(sorted)
	switch {
	case n == 0:
		return math.NaN()
	case n%2 == 0:
		return float64(0.5 * (sorted[n/2] + sorted[n/2-1]))
	default:
		return float64(sorted[n/2])
	}
}

// Divergence holds llama-perplexity's --kl-divergence statistics of one
// model against the base model, over every scored token.
type Divergence struct {
	// Tokens is the number of scored tokens.
	Tokens int `json:"tokens"`
	// MeanKLD and MeanKLDErr: mean KL divergence (nats) and its standard error.
	MeanKLD    float64 `json:"mean_kld"`
	MeanKLDErr float64 `json:"mean_kld_err"`
	// MedianKLD, KLD99, KLD999 and MaxKLD: the median, 99th and 99.9th
	// percentiles and maximum of the per-token KL divergence.
	MedianKLD float64 `json:"median_kld"`
	KLD99     float64 `json:"kld_p99"`
	KLD999    float64 `json:"kld_p99_9"`
	MaxKLD    float64 `json:"max_kld"`
	// SameTop and SameTopErr: the fraction of tokens whose most likely next
	// token is the base model's, and its standard error.
	SameTop    float64 `json:"same_top"`
	SameTopErr float64 `json:"same_top_err"`
	// MeanDeltaP and MeanDeltaPErr: mean change of the correct token's
	// probability (model minus base) and its standard error.
	MeanDeltaP    float64 `json:"mean_delta_p"`
	MeanDeltaPErr float64 `json:"mean_delta_p_err"`
	// RMSDeltaP and RMSDeltaPErr: root mean square of that change.
	RMSDeltaP    float64 `json:"rms_delta_p"`
	RMSDeltaPErr float64 `json:"rms_delta_p_err"`
	// PPLRatio and PPLRatioErr: PPL(model)/PPL(base) over the same tokens,
	// with the uncertainty that accounts for their correlation.
	PPLRatio    float64 `json:"ppl_ratio"`
	PPLRatioErr float64 `json:"ppl_ratio_err"`
	// BasePPL is the base model's perplexity over the same tokens.
	BasePPL float64 `json:"base_ppl"`
}

// summarize turns the sums and per-token values into Divergence; it sorts
// the value slices in place.
func summarize(acc *kldAcc, klds, pdiffs []float32) Divergence {
	slices.Sort(klds)
	slices.Sort(pdiffs)
	d := Divergence{Tokens: acc.count}
	d.MeanKLD, d.MeanKLDErr = meanErr(acc.sumKLD, acc.sumKLD2, acc.count)
	d.MedianKLD = median(klds)
	d.KLD99 = percentile(klds, 0.990)
	d.KLD999 = percentile(klds, 0.999)
	if len(klds) > 0 {
		d.MaxKLD = float64(klds[len(klds)-1])
	}
	if acc.count > 1 {
		d.SameTop = float64(acc.sameTop) / float64(acc.count)
		d.SameTopErr = math.Sqrt(d.SameTop * (1 - d.SameTop) / float64(acc.count-1))
	}
	d.MeanDeltaP, d.MeanDeltaPErr = meanErr(acc.sumPDiff, acc.sumPDiff2, acc.count)
	mse, mseErr := meanErr(acc.sumPDiff2, acc.sumPDiff4, acc.count)
	d.RMSDeltaP = math.Sqrt(mse)
	if d.RMSDeltaP > 0 {
		d.RMSDeltaPErr = 0.5 / d.RMSDeltaP * mseErr
	}
	lq, lqErr := meanErr(acc.sumNLL, acc.sumNLL2, acc.count)
	lb, lbErr := meanErr(acc.sumNLLBase, acc.sumNLLBase2, acc.count)
	cov := covariance(acc.sumNLL, acc.sumNLLBase, acc.sumNLLNLLBase, acc.count)
	ratio := lq - lb
	ratioErr := math.Sqrt(max(0, lqErr*lqErr+lbErr*lbErr-2*cov))
	d.PPLRatio = math.Exp(ratio)
	d.PPLRatioErr = d.PPLRatio * ratioErr
	d.BasePPL = math.Exp(lb)
	return d
}
