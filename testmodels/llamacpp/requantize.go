package llamacpp

import (
	"fmt"
	"io"
	"regexp"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/quantize"
)

// projection matches the attention and MLP projection matrices of a block.
var projection = regexp.MustCompile(`^blk\.\d+\.(attn_(q|k|v|output)|ffn_(gate|up|down))\.weight$`)

// EncodeProjections writes a copy of the F32 model in whose projection
// matrices (attention q/k/v/output and MLP gate/up/down) are stored as typ,
// every other tensor and key unchanged: the quantized original that prune
// and its control twin start from in the evaluation tests. It returns the
// number of tensors converted.
func EncodeProjections(in, out string, typ gguf.Type) (int, error) {
	f, err := gguf.Open(in)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := gguf.Header{Version: f.Version, KVs: f.KVs}
	convert := make([]bool, len(f.Tensors))
	n := 0
	for i, ti := range f.Tensors {
		if _, whole := typ.RowBytes(ti.Shape[0]); whole && ti.Type == gguf.TypeF32 && projection.MatchString(ti.Name) {
			convert[i] = true
			ti.Type = typ
			n++
		}
		h.Tensors = append(h.Tensors, ti)
	}
	w, err := gguf.Create(out, h, gguf.CreateOptions{})
	if err != nil {
		return 0, err
	}
	fail := func(err error) (int, error) {
		w.Abort()
		return 0, err
	}
	for i, ti := range f.Tensors {
		raw, err := io.ReadAll(f.TensorReader(ti))
		if err != nil {
			return fail(fmt.Errorf("%s: tensor %s: %w", in, ti.Name, err))
		}
		if convert[i] {
			vals := make([]float32, ti.Elements())
			if err := quantize.Decode(ti.Type, vals, raw); err != nil {
				return fail(fmt.Errorf("%s: tensor %s: %w", in, ti.Name, err))
			}
			size, _ := typ.RowBytes(ti.Elements())
			raw = make([]byte, size)
			if err := quantize.Encode(typ, raw, vals); err != nil {
				return fail(fmt.Errorf("%s: tensor %s: %w", in, ti.Name, err))
			}
		}
		if _, err := w.Write(raw); err != nil {
			return fail(err)
		}
	}
	return n, w.Close()
}
