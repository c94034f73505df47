package quantize

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
)

// fuzzTypes lists every type Decode supports, in a fixed order, so that a
// fuzz input's type index names the same type on every run.
func fuzzTypes() []gguf.Type {
	var ts []gguf.Type
	for t, c := range codecs {
		if c.decode != nil {
			ts = append(ts, t)
		}
	}
	slices.Sort(ts)
	return ts
}

// FuzzDecode feeds arbitrary bytes to every decoder. A whole number of
// blocks must decode, without a panic, into exactly the values the type's
// block size says; any other length must be a clean error that touches no
// value of dst. The seeds are blocks our encoders wrote from random and
// special values, one per encodable type, and a few odd lengths.
func FuzzDecode(f *testing.F) {
	types := fuzzTypes()
	rng := rand.New(rand.NewPCG(12, 34))
	for i, t := range types {
		ti, _ := t.Info()
		if CanEncode(t) {
			nb := max(2, 3/ti.BlockSize+1)
			src := make([]float32, nb*ti.BlockSize)
			for j := range src {
				src[j] = float32(rng.NormFloat64())
			}
			src[0], src[1], src[2] = 0, float32(math.Inf(1)), float32(math.NaN())
			blocks := make([]byte, nb*ti.BlockBytes)
			enc := Encode
			if NeedsWeights(t) {
				enc = EncodeKeepZeros // brings its own importance weights
			}
			if err := enc(t, blocks, src); err != nil {
				f.Fatalf("seed %s: %v", t, err)
			}
			f.Add(uint8(i), blocks)
		}
		f.Add(uint8(i), make([]byte, ti.BlockBytes+1))
	}
	f.Add(uint8(0), []byte{})
	f.Add(uint8(255), []byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, idx uint8, src []byte) {
		typ := types[int(idx)%len(types)]
		ti, ok := typ.Info()
		if !ok {
			t.Fatalf("%s decodes but has no size information", typ)
		}
		for _, simd := range []bool{true, false} {
			was := SetSIMD(simd)
			checkFuzzDecode(t, typ, ti.BlockSize, ti.BlockBytes, src)
			SetSIMD(was)
		}
	})
}

// checkFuzzDecode runs one fuzz input through Decode, with dst sized from
// the block count and, for whole blocks, one value too long and too short.
func checkFuzzDecode(t *testing.T, typ gguf.Type, bs, bb int, src []byte) {
	n := len(src) / bb * bs
	whole := len(src)%bb == 0
	for _, size := range []int{n, n + 1, n - 1} {
		if size < 0 {
			continue
		}
		dst := make([]float32, size)
		const marker = float32(-12345.5)
		for i := range dst {
			dst[i] = marker
		}
		err := Decode(typ, dst, src)
		if whole && size == n {
			if err != nil {
				t.Fatalf("%s: %d bytes (%d blocks): %v", typ, len(src), len(src)/bb, err)
			}
			continue
		}
		if err == nil {
			t.Fatalf("%s: %d bytes into %d values: no error", typ, len(src), size)
		}
		var ue *UnsupportedError
		if errors.As(err, &ue) {
			t.Fatalf("%s: %d bytes into %d values: %v, want a length error", typ, len(src), size, err)
		}
		for i, v := range dst {
			if math.Float32bits(v) != math.Float32bits(marker) {
				t.Fatalf("%s: %d bytes into %d values: value %d written (%v) despite the error %v", typ, len(src), size, i, v, err)
			}
		}
	}
}
