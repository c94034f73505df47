package prune

import (
	"fmt"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/imatrix"
	"github.com/physarium/physarium-gguf/quantize"
)

// reencodeType is the type a target's changed blocks are encoded in: its
// own, or the --retype type.
func (p *tensorPlan) reencodeType() gguf.Type {
	if p.retype != nil {
		return p.retype.typ
	}
	return p.info.Type
}

// attachReencodeWeights gives every target re-encoded in a type with a
// weighted encoder (the IQ grids) the importance weights of its input
// columns from src (an --imatrix, or the importance matrix of a
// --calibration file; nil when the run has neither). A target whose type
// ggml encodes only with weights (quantize.NeedsWeights) and that gets
// none is an error naming the file and the tensor; any other target
// without an entry is encoded without an imatrix. The targets that got
// weights are listed in r.ReencodeWeights; it reports whether any did.
func attachReencodeWeights(path string, plans []tensorPlan, src *imatrix.Matrix, r *Report) (bool, error) {
	used := false
	for i := range plans {
		p := &plans[i]
		t := p.reencodeType()
		if !p.target || !quantize.CanEncodeWeighted(t) {
			continue
		}
		var e *imatrix.Entry
		if src != nil {
			e = src.Entries[p.info.Name]
		}
		switch {
		case e == nil && src == nil && quantize.NeedsWeights(t):
			return false, fmt.Errorf("prune: %s: tensor %s: type %s is encoded only with importance weights (as llama-quantize requires): pass --imatrix", path, p.info.Name, t)
		case e == nil && quantize.NeedsWeights(t):
			return false, fmt.Errorf("prune: %s: tensor %s: type %s is encoded only with importance weights, and %s has no entry for it", path, p.info.Name, t, src.Path)
		case e == nil:
			continue
		}
		w, err := e.Weights(p.rowLen, p.mats)
		if err != nil {
			return false, fmt.Errorf("prune: %s: tensor %s: %w", src.Path, p.info.Name, err)
		}
		p.reencW, used = w, true
		r.ReencodeWeights = append(r.ReencodeWeights, p.info.Name)
	}
	return used, nil
}

// chunkWeights returns the importance weights of the values [lo, hi) of
// the band that starts at global row row0 (each value gets its column's
// weight in the band's matrix), in buf's memory; nil when the target has
// none.
func (p *tensorPlan) chunkWeights(buf *[]float32, row0, lo, hi int) []float32 {
	if p.reencW == nil {
		return nil
	}
	m := row0 / p.matrixRows
	col := p.reencW[m*p.rowLen : (m+1)*p.rowLen]
	*buf = grow(*buf, hi-lo)
	qw := (*buf)[:hi-lo]
	for i := range qw {
		qw[i] = col[(lo+i)%p.rowLen]
	}
	return qw
}
