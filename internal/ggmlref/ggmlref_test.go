package ggmlref

import (
	"errors"
	"math"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
)

func mustLoad(t *testing.T) *Lib {
	t.Helper()
	l, err := Load()
	if errors.Is(err, ErrNoLlama) || errors.Is(err, ErrNoCgo) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestQ8_0RoundTrip quantizes a known row with ggml and checks the block
// layout by hand: an fp16 scale max|x|/127 followed by 32 int8 codes.
func TestQ8_0RoundTrip(t *testing.T) {
	l := mustLoad(t)
	src := make([]float32, 64)
	for i := range src {
		src[i] = float32(i) - 31.5
	}
	dst := make([]byte, 2*34)
	if err := l.Quantize(gguf.TypeQ8_0, dst, src, 2, 32); err != nil {
		t.Fatal(err)
	}
	// Block 0 holds -31.5..0.5: max |x| is 31.5, d = 31.5/127, code of -31.5 is -127.
	if int8(dst[2]) != -127 {
		t.Errorf("first code %d, want -127", int8(dst[2]))
	}
	back := make([]float32, 64)
	if err := l.Dequantize(gguf.TypeQ8_0, back, dst); err != nil {
		t.Fatal(err)
	}
	for i := range src {
		if math.Abs(float64(back[i]-src[i])) > 0.2 {
			t.Fatalf("value %d: %v back as %v", i, src[i], back[i])
		}
	}
	ref := make([]byte, len(dst))
	if err := l.QuantizeRef(gguf.TypeQ8_0, ref, src); err != nil {
		t.Fatal(err)
	}
	if string(ref) != string(dst) {
		t.Errorf("quantize_row_q8_0_ref and ggml_quantize_chunk differ")
	}
}

func TestF32Identity(t *testing.T) {
	l := mustLoad(t)
	src := []float32{1, -2, float32(math.Inf(1)), 3.25}
	dst := make([]byte, 16)
	if err := l.Quantize(gguf.TypeF32, dst, src, 1, 4); err != nil {
		t.Fatal(err)
	}
	back := make([]float32, 4)
	if err := l.Dequantize(gguf.TypeF32, back, dst); err != nil {
		t.Fatal(err)
	}
	for i := range src {
		if math.Float32bits(back[i]) != math.Float32bits(src[i]) {
			t.Fatalf("value %d: %v back as %v", i, src[i], back[i])
		}
	}
}

// TestBadArguments checks that arguments on which ggml would abort are
// refused with an error instead.
func TestBadArguments(t *testing.T) {
	l := mustLoad(t)
	cases := []struct {
		name string
		err  error
	}{
		{"ragged row", l.Quantize(gguf.TypeQ4_0, make([]byte, 18), make([]float32, 33), 1, 33)},
		{"short dst", l.Quantize(gguf.TypeQ4_0, make([]byte, 17), make([]float32, 32), 1, 32)},
		{"imatrix type", l.Quantize(gguf.TypeIQ2_XXS, make([]byte, 66), make([]float32, 256), 1, 256)},
		{"no chunk case", l.Quantize(gguf.TypeQ8_K, make([]byte, 292), make([]float32, 256), 1, 256)},
		{"integer type", l.Quantize(gguf.TypeI8, make([]byte, 4), make([]float32, 4), 1, 4)},
		{"ragged dequant", l.Dequantize(gguf.TypeQ4_0, make([]float32, 32), make([]byte, 19))},
		{"no to_float", l.Dequantize(gguf.TypeI32, make([]float32, 1), make([]byte, 4))},
		{"unknown type", l.Dequantize(gguf.Type(4), make([]float32, 1), make([]byte, 4))},
	}
	for _, c := range cases {
		if c.err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	if !l.RequiresImatrix(gguf.TypeIQ1_S) || l.RequiresImatrix(gguf.TypeQ4_K) {
		t.Errorf("RequiresImatrix wrong")
	}
}
