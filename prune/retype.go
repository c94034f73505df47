package prune

import (
	"fmt"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/quantize"
)

// checkRetype refuses a --retype type that prune cannot write, and a
// control twin beside it.
func checkRetype(opts Options) error {
	if opts.Retype == nil {
		return nil
	}
	t := *opts.Retype
	if _, ok := t.Info(); !ok || !quantize.CanEncode(t) || !quantize.CanDecode(t) {
		return fmt.Errorf("prune: --retype %s: not a type prune can encode", t)
	}
	if opts.Control != "" {
		return fmt.Errorf("prune: --retype with a control twin is not supported")
	}
	return nil
}

// retypePlans makes every target of plans written in type t: each row
// must be whole blocks of t. The report's rows name t and the input's
// type. A target already of type t is pruned as without --retype (its
// blocks without a kill keep their bytes).
func retypePlans(f *gguf.File, plans []tensorPlan, t gguf.Type, r *Report) error {
	ti, _ := t.Info()
	z, _ := quantize.Zero(t)
	for i := range plans {
		p := &plans[i]
		if !p.target || p.info.Type == t {
			continue
		}
		rb, whole := t.RowBytes(uint64(p.rowLen))
		if !whole {
			return fmt.Errorf("prune: %s: tensor %s: --retype %s: rows of %d weights are not whole %s blocks of %d", f.Path, p.info.Name, t, p.rowLen, t, ti.BlockSize)
		}
		p.retype = &retypedPlan{typ: t, blockSize: ti.BlockSize, blockBytes: ti.BlockBytes, rowBytes: int(rb)}
		p.noZeroCode = z == quantize.ZeroNone
		tr := &r.Tensors[p.report]
		tr.RetypedFrom, tr.Type = tr.Type, t.String()
		tr.Blocks = tr.Weights / uint64(ti.BlockSize)
		tr.ZeroCode = z != quantize.ZeroNone
	}
	r.Retype = t.String()
	return nil
}

// retypedPlan is how a target is written in another type (--retype).
type retypedPlan struct {
	typ                             gguf.Type
	blockSize, blockBytes, rowBytes int
}

// outputTypes returns the type of every tensor in the output.
func outputTypes(f *gguf.File, plans []tensorPlan) []gguf.Type {
	types := make([]gguf.Type, len(f.Tensors))
	for i, t := range f.Tensors {
		types[i] = t.Type
		if plans[i].retype != nil {
			types[i] = plans[i].retype.typ
		}
	}
	return types
}

// retypeBand is the surgery of a band written in another type: the kills
// are zeroed (the method's survivors replace the stored values when it
// changed them) and every block is encoded in the new type.
func (w *worker) retypeBand(j *bandJob, p *tensorPlan, row0, rows int) error {
	b, bufs, st, rt := &w.buf, j.bufs, &j.stats, p.retype
	n := rows * p.rowLen
	b.vals, b.check = grow(b.vals, n), grow(b.check, n)
	vals, check := b.vals[:n], b.check[:n]
	killed, bad := zeroKills(vals, b.before[:n], b.mask[:n])
	if bad != 0 {
		return fmt.Errorf("the kernel marked %d already-zero elements of rows %d-%d as kills", bad, row0, row0+rows-1)
	}
	st.killed += killed
	ref := b.before[:n]
	if b.after != nil {
		ref = b.after[:n]
		for i, m := range b.mask[:n] {
			if m == 0 {
				vals[i] = ref[i]
			}
		}
	}
	bufs.retyped = grow(bufs.retyped, rows*rt.rowBytes)
	out := bufs.retyped[:rows*rt.rowBytes]
	if err := quantize.EncodeKeepZerosWeighted(rt.typ, out, vals, p.chunkWeights(&b.qw, row0, 0, n)); err != nil {
		return err
	}
	if err := quantize.Decode(rt.typ, check, out); err != nil {
		return err
	}
	st.measure(check, ref, b.mask[:n])
	if p.noZeroCode {
		st.measureRel(check, b.mask[:n], rt.blockSize)
	}
	st.reencoded += uint64(n / rt.blockSize)
	j.out = out
	return nil
}
