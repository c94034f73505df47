package llamacpp

import (
	"math"
	"testing"
)

// TestKLDRowByHand checks the divergence of two three-token distributions
// against the formulas written out: KL(p||q) = sum p_i log(p_i/q_i).
func TestKLDRowByHand(t *testing.T) {
	base := []float32{2, 1, 0}
	model := []float32{1, 2, 0}
	b := baseRow{lp: make([]float32, 3), p: make([]float32, 3)}
	nllBase := b.set(base, 0)
	var acc kldAcc
	kld, pDiff, nll := kldRow(model, &b, 0, make([]float32, 3), &acc)

	softmax := func(l []float32) []float64 {
		var s float64
		out := make([]float64, len(l))
		for i, v := range l {
			out[i] = math.Exp(float64(v))
			s += out[i]
		}
		for i := range out {
			out[i] /= s
		}
		return out
	}
	p, q := softmax(base), softmax(model)
	want := 0.0
	for i := range p {
		want += p[i] * math.Log(p[i]/q[i])
	}
	if math.Abs(kld-want) > 1e-6 {
		t.Errorf("KLD %v, want %v", kld, want)
	}
	if math.Abs(nllBase+math.Log(p[0])) > 1e-6 || math.Abs(nll+math.Log(q[0])) > 1e-6 {
		t.Errorf("NLL base %v model %v, want %v %v", nllBase, nll, -math.Log(p[0]), -math.Log(q[0]))
	}
	if math.Abs(float64(pDiff)-(q[0]-p[0])) > 1e-6 {
		t.Errorf("delta p %v, want %v", pDiff, q[0]-p[0])
	}
	if acc.sameTop != 0 || acc.count != 1 {
		t.Errorf("top tokens 0 and 1 counted as the same: %+v", acc)
	}
	// The same distribution: exactly zero.
	var acc2 kldAcc
	if k, d, _ := kldRow(base, &b, 2, make([]float32, 3), &acc2); k != 0 || d != 0 || acc2.sameTop != 1 {
		t.Errorf("self: KLD %v, delta p %v, same top %d", k, d, acc2.sameTop)
	}
}

// TestSummaryFormulas checks llama-perplexity's mean +/- standard error,
// percentile and median on small series.
func TestSummaryFormulas(t *testing.T) {
	vals := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	var s, s2 float64
	for _, v := range vals {
		s += v
		s2 += v * v
	}
	m, e := meanErr(s, s2, len(vals))
	// Population variance 143/12 divided by n-1 = 11.
	if m != 6.5 || math.Abs(e-math.Sqrt(143.0/12/11)) > 1e-12 {
		t.Errorf("meanErr = %v +/- %v", m, e)
	}
	if _, e := meanErr(s, s2, 10); e != 0 {
		t.Errorf("meanErr of 10 values gives an uncertainty %v; llama-perplexity gives none under 11", e)
	}
	sorted := []float32{0, 1, 2, 3, 4}
	if percentile(sorted, 0.5) != 2 || math.Abs(percentile(sorted, 0.99)-3.96) > 1e-6 {
		t.Errorf("percentile: %v %v", percentile(sorted, 0.5), percentile(sorted, 0.99))
	}
	if median(sorted) != 2 || median(sorted[:4]) != 1.5 {
		t.Errorf("median: %v %v", median(sorted), median(sorted[:4]))
	}
}

// TestEncodeBaseRow: llama-perplexity's 16-bit encoding reads back each
// log-probability within one step, and clips 16 nats below the top.
func TestEncodeBaseRow(t *testing.T) {
	row := []float32{3, 1, -2, -30, 0.5}
	dst := make([]uint16, baseRowLen(len(row)))
	nll := encodeBaseRow(row, dst, 1)
	scale := math.Float32frombits(uint32(dst[0]) | uint32(dst[1])<<16)
	minLP := math.Float32frombits(uint32(dst[2]) | uint32(dst[3])<<16)
	lp := make([]float32, len(row))
	logProbs(row, lp, 1)
	for i := range row {
		got := scale*float32(dst[4+i]) + minLP
		want := max(lp[i], lp[0]-16)
		if math.Abs(float64(got-want)) > float64(scale) {
			t.Errorf("token %d: decoded %v, want %v", i, got, want)
		}
	}
	if math.Abs(nll+float64(lp[1])) > 1e-5 {
		t.Errorf("NLL %v, want %v", nll, -lp[1])
	}
}
