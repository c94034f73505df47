package prune

import (
	"fmt"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/quantize"
)

// tensorPlan is what the run does with one tensor of the input.
type tensorPlan struct {
	info       gguf.TensorInfo
	target     bool // pruned (else copied byte for byte)
	rowLen     int  // elements per row (ne[0])
	matrixRows int  // rows per matrix (ne[1])
	mats       int  // matrices (experts: ne[2]*ne[3])
	// rowBytes is the stored size of one row; blockSize and blockBytes
	// describe the type's blocks.
	rowBytes, blockSize, blockBytes int
	report                          int // index of the tensor's row in Report.Tensors, -1 for copies
	// zero is the encoding of one 0.0 for single-element block types, and
	// zeroExact whether it decodes to exactly 0.0.
	zero      []byte
	zeroExact bool
	// noZeroCode says the type has no zero code (the IQ grids, IQ4_*):
	// only then can a kill read back non-zero, and surgery measure how far.
	noZeroCode bool
	// retype, when set, is the type the tensor is written in (--retype).
	retype *retypedPlan
	// act holds the activation scales a_i of every matrix, matrix after
	// matrix (mats*row values), for the activation-aware methods; nil means
	// |w| alone (v1 food).
	act []float32
	// reencW holds the importance weights the changed blocks are encoded
	// with (quantize.EncodeKeepZerosWeighted), one per input column of
	// every matrix, matrix after matrix; nil for none.
	reencW []float32
	// state is what the method's Prepare returned for the tensor (a
	// method.Preparer), else nil.
	state any
}

// plan decides the fate of every tensor: target or copy, with the checks that
// must pass before any output is written.
func plan(f *gguf.File, sel *compiledSelection, skipUnsupported bool, r *Report) ([]tensorPlan, error) {
	plans := make([]tensorPlan, len(f.Tensors))
	for i, t := range f.Tensors {
		p := tensorPlan{info: t, report: -1}
		r.Weights.Model += t.Elements()
		v := sel.verdict(t)
		if v.Target {
			if err := supported(t); err != nil {
				if !skipUnsupported {
					return nil, fmt.Errorf("prune: %s: tensor %s: %w (use --skip-unsupported to leave such tensors untouched)", f.Path, t.Name, err)
				}
				r.Skipped = append(r.Skipped, SkippedTensor{Name: t.Name, Type: t.Type.String(), Weights: t.Elements(), Reason: err.Error()})
			} else {
				p.target = true
			}
		}
		if p.target {
			ti, _ := t.Type.Info()
			p.blockSize, p.blockBytes = ti.BlockSize, ti.BlockBytes
			p.rowLen = int(t.Shape[0])
			p.matrixRows = int(t.Shape[1])
			p.mats = 1
			for _, n := range t.Shape[2:] {
				p.mats *= int(n)
			}
			rb, _ := t.Type.RowBytes(t.Shape[0])
			p.rowBytes = int(rb)
			if ti.BlockSize == 1 {
				p.zero = make([]byte, ti.BlockBytes)
				var back [1]float32
				if err := quantize.EncodeKeepZeros(t.Type, p.zero, []float32{0}); err != nil {
					return nil, fmt.Errorf("prune: %s: tensor %s: %w", f.Path, t.Name, err)
				}
				if err := quantize.Decode(t.Type, back[:], p.zero); err != nil {
					return nil, fmt.Errorf("prune: %s: tensor %s: %w", f.Path, t.Name, err)
				}
				p.zeroExact = back[0] == 0
			}
			z, _ := quantize.Zero(t.Type)
			p.noZeroCode = z == quantize.ZeroNone
			p.report = len(r.Tensors)
			r.Tensors = append(r.Tensors, TensorReport{
				Name: t.Name, Type: t.Type.String(), Shape: t.Shape, Weights: t.Elements(),
				Blocks:   t.Elements() / uint64(ti.BlockSize),
				ZeroCode: z != quantize.ZeroNone,
			})
		}
		if !v.Target {
			r.addNonTarget(v, t.Elements())
		}
		plans[i] = p
	}
	if len(r.Skipped) > 0 {
		r.SkippedNote = fmt.Sprintf("%d selected tensors of unsupported types were left untouched and are not counted in the target denominator", len(r.Skipped))
	}
	return plans, nil
}

// supported reports why a tensor cannot be pruned: its type cannot be decoded
// or re-encoded, or its rows are too long for an int on this platform.
func supported(t gguf.TensorInfo) error {
	if !quantize.CanDecode(t.Type) {
		return fmt.Errorf("type %s cannot be decoded", t.Type)
	}
	if !quantize.CanEncode(t.Type) {
		return fmt.Errorf("type %s cannot be re-encoded", t.Type)
	}
	const maxInt = int(^uint(0) >> 1)
	for _, n := range t.Shape {
		if n > uint64(maxInt>>8) {
			return fmt.Errorf("dimension %d too large", n)
		}
	}
	return nil
}

// bands returns the number of row bands (errata.TileSize rows each, never crossing
// a matrix boundary) of a target tensor.
func (p *tensorPlan) bands() int {
	return errata.BandsPerMatrix(p.matrixRows) * p.mats
}

// jobs returns the number of jobs of the tensor: its bands when it is a
// target, else the copyChunk pieces of its data.
func (p *tensorPlan) jobs() int {
	if p.target {
		return p.bands()
	}
	return int((p.info.Bytes() + copyChunk - 1) / copyChunk)
}

// band returns the first global row and the row count of band b.
func (p *tensorPlan) band(b int) (row0, rows int) {
	perMat := errata.BandsPerMatrix(p.matrixRows)
	mat, rb := b/perMat, b%perMat
	row0 = rb * errata.TileSize
	rows = min(errata.TileSize, p.matrixRows-row0)
	return mat*p.matrixRows + row0, rows
}
