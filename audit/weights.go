package audit

import (
	"fmt"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/quantize"
)

// setWeights gives the walk the importance weights prune re-encoded the
// tensor's blocks with (quantize.EncodeKeepZerosWeighted), or says why the
// audit cannot know them. Only the IQ grid types take weights, and prune
// uses them when it read an importance matrix (physarium.imatrix) or a
// calibration file (physarium.calibration); the audit needs that matrix
// (Options.Imatrix) to expect the same bytes.
func (w *walk) setWeights() string {
	a, t := w.a, w.t
	if !quantize.CanEncodeWeighted(t.Type) || !(w.replay || a.control) {
		return ""
	}
	_, fromImatrix := a.str(errata.KeyImatrix)
	_, fromCalibration := a.str(errata.KeyCalibration)
	if !fromImatrix && !fromCalibration {
		return ""
	}
	if a.imat == nil {
		return fmt.Sprintf("its %s blocks were re-encoded with the importance weights of the run's importance matrix (%s), which the audit is not given (--imatrix)", t.Type, recordedWeightsKey(fromImatrix))
	}
	e := a.imat.Entries[t.Name]
	if e == nil {
		return "" // prune encodes a target without an entry without weights
	}
	mats := 1
	for _, n := range t.Shape[2:] {
		mats *= int(n)
	}
	qw, err := e.Weights(w.rowLen, mats)
	if err != nil {
		return fmt.Sprintf("%s: %v", a.imat.Path, err)
	}
	w.qw, w.matrixValues = qw, w.rowLen*int(t.Shape[1])
	return ""
}

// recordedWeightsKey names the key that records where prune's
// re-encoding weights came from.
func recordedWeightsKey(fromImatrix bool) string {
	if fromImatrix {
		return errata.KeyPrefix + errata.KeyImatrix
	}
	return errata.KeyPrefix + errata.KeyCalibration
}

// weightsAt returns the importance weights of the n values of the tensor
// from value index v0 on (counting every matrix's values), in the pass
// buffers; nil when the walk has none.
func (w *walk) weightsAt(v0 int64, n int) []float32 {
	if w.qw == nil {
		return nil
	}
	b := &w.a.bufs
	b.qw = grow(b.qw, n)
	qw := b.qw[:n]
	for i := range qw {
		v := v0 + int64(i)
		m := int(v / int64(w.matrixValues))
		qw[i] = w.qw[m*w.rowLen+int(v%int64(w.rowLen))]
	}
	return qw
}

// weightedTarget reports whether a target of the file is of a type whose
// re-encoding takes importance weights: prune then reads an importance
// matrix (and records it) whatever the method.
func (a *auditor) weightedTarget() bool {
	for _, ta := range a.r.Tensors {
		if t, ok := a.file.Tensor(ta.Name); ok && quantize.CanEncodeWeighted(t.Type) {
			return true
		}
	}
	return false
}
