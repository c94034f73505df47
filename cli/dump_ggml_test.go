package cli

import (
	"encoding/binary"
	"errors"
	"io"
	"math"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/internal/ggmlref"
	"github.com/physarium/physarium-gguf/quantize"
	"github.com/physarium/physarium-gguf/testmodels"
)

// TestDumpEqualsGGML checks, for a generated model of every encodable type
// (typeModels), that `dump` of a projection equals ggml's own to_float of
// the same bytes, bit for bit.
func TestDumpEqualsGGML(t *testing.T) {
	lib, err := ggmlref.Load()
	if errors.Is(err, ggmlref.ErrNoLlama) || errors.Is(err, ggmlref.ErrNoCgo) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	models := typeModels(t)
	for _, typ := range gguf.Types() {
		if !quantize.CanEncode(typ) || !testmodels.SupportedType(typ) {
			continue
		}
		t.Run(typ.String(), func(t *testing.T) {
			p := models[typ]
			name := "blk.0.attn_q.weight"
			out := mustRun(t, "dump", "--tensor", name, p)
			f, err := gguf.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			ti, _ := f.Tensor(name)
			raw, err := io.ReadAll(f.TensorReader(ti))
			if err != nil {
				t.Fatal(err)
			}
			want := make([]float32, ti.Elements())
			if err := lib.Dequantize(typ, want, raw); err != nil {
				t.Fatal(err)
			}
			if len(out) != 4*len(want) {
				t.Fatalf("dump gave %d bytes, want %d", len(out), 4*len(want))
			}
			for i, w := range want {
				if g := binary.LittleEndian.Uint32([]byte(out[4*i:])); g != math.Float32bits(w) {
					t.Fatalf("value %d: dump %g, ggml %g", i, math.Float32frombits(g), w)
				}
			}
		})
	}
}
