package quantize

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
)

func TestParityQ2_K(t *testing.T) { checkParity(t, gguf.TypeQ2_K) }
func TestParityQ3_K(t *testing.T) { checkParity(t, gguf.TypeQ3_K) }
func TestParityQ4_K(t *testing.T) { checkParity(t, gguf.TypeQ4_K) }
func TestParityQ5_K(t *testing.T) { checkParity(t, gguf.TypeQ5_K) }
func TestParityQ6_K(t *testing.T) { checkParity(t, gguf.TypeQ6_K) }

// TestDecodeQ4KPaths compares the assembly and pure-Go Q4_K decoders bit
// for bit on random blocks, with guard values after the output.
func TestDecodeQ4KPaths(t *testing.T) {
	if !simdDecodeQ4K.provided {
		t.Skip("no AVX2 path in this build or on this CPU")
	}
	r := rand.New(rand.NewPCG(3, 4))
	const nb = 512
	src := make([]byte, nb*kQ4KBytes)
	for i := range src {
		src[i] = byte(r.Uint32())
	}
	want := make([]float32, nb*kQK+8)
	got := make([]float32, nb*kQK+8)
	for i := nb * kQK; i < len(got); i++ {
		want[i], got[i] = 12345, 12345
	}
	decodeQ4KGo(want[:nb*kQK], src)
	simdDecodeQ4K.fn(got[:nb*kQK], src)
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("value %d: avx2 %v (%08x), go %v (%08x)", i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
}

// TestEncodeKQuantSIMDPaths compares the AVX2 Q4_K and Q6_K encoders with
// the pure-Go ones byte for byte on every generated case of the parity
// framework, with blocks holding NaN or infinities mixed in (which the
// SIMD path hands back to the Go code) and guard bytes after the output.
func TestEncodeKQuantSIMDPaths(t *testing.T) {
	for _, tc := range []struct {
		typ  gguf.Type
		bb   int
		simd func([]byte, []float32) int
		gof  func([]byte, []float32)
	}{
		{gguf.TypeQ4_K, kQ4KBytes, simdEncodeQ4K.fn, encodeQ4KGo},
		{gguf.TypeQ6_K, kQ6KBytes, simdEncodeQ6K.fn, encodeQ6KGo},
	} {
		if tc.simd == nil {
			t.Skip("no AVX2 encoder in this build or on this CPU")
		}
		for ci, c := range genCases {
			for _, nb := range []int{1, 3, 17} {
				src := genRows(c, 1, nb*kQK, kQK, uint64(ci*100+nb))
				if nb == 17 {
					// Non-finite values in some blocks.
					src[5*kQK+7] = float32(math.NaN())
					src[9*kQK] = float32(math.Inf(1))
					src[16*kQK+255] = float32(math.Inf(-1))
				}
				want := make([]byte, nb*tc.bb+8)
				got := make([]byte, nb*tc.bb+8)
				for i := range got {
					want[i], got[i] = 0xA5, 0xA5
				}
				tc.gof(want[:nb*tc.bb], src)
				kEncodeSIMD(got[:nb*tc.bb], src, tc.bb, tc.simd, func(d []byte, s []float32) { tc.gof(d, s) })
				for i := range got {
					if got[i] != want[i] {
						b := i / tc.bb
						t.Fatalf("%s %s (%d blocks): byte %d (block %d) is %02x, Go gives %02x", tc.typ, c.name, nb, i, b, got[i], want[i])
					}
				}
			}
		}
		// Random blocks with per-sub-block scales spanning many octaves.
		r := rand.New(rand.NewPCG(11, uint64(tc.typ)))
		const nb = 256
		src := make([]float32, nb*kQK)
		for i := 0; i < len(src); i += 16 {
			if r.IntN(8) == 0 {
				continue // some sub-blocks of 16 all zero
			}
			s := math.Ldexp(1, r.IntN(40)-30)
			for k := i; k < i+16; k++ {
				src[k] = float32(r.NormFloat64() * s)
			}
		}
		want := make([]byte, nb*tc.bb)
		got := make([]byte, nb*tc.bb)
		tc.gof(want, src)
		kEncodeSIMD(got, src, tc.bb, tc.simd, tc.gof)
		if b := firstBlockDiff(got, want, tc.bb); b >= 0 {
			t.Fatalf("%s random: block %d differs: simd %x go %x", tc.typ, b, got[b*tc.bb:(b+1)*tc.bb], want[b*tc.bb:(b+1)*tc.bb])
		}
	}
}
