package quantize

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
)

// prunedRows returns rows of case c with about a quarter of the values set to
// exact 0.0 (a random mask, as pruning leaves them).
func prunedRows(c genCase, n, blockSize int, seed uint64) []float32 {
	src := genRows(c, 1, n, blockSize, seed)
	r := rand.New(rand.NewPCG(seed, 99))
	for i := range src {
		if r.IntN(4) == 0 {
			src[i] = 0
		}
	}
	return src
}

// TestZeroExactTypes shows that the reference encoder of every ZeroExact type
// of this file's owner maps 0.0 to exactly 0.0, on every generated case with
// pruned zeros. The one exception is a block whose fp16 scale overflows to
// Inf (values beyond ~65504 times the format's largest code): 0*Inf is NaN;
// the "huge" case is checked to fail only in such blocks.
func TestZeroExactTypes(t *testing.T) {
	for _, typ := range []gguf.Type{gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16, gguf.TypeQ4_0, gguf.TypeQ5_0,
		gguf.TypeQ8_0, gguf.TypeMXFP4, gguf.TypeTQ1_0, gguf.TypeTQ2_0} {
		if z, ok := Zero(typ); !ok || z != ZeroExact {
			t.Errorf("%s: Zero() = %v, %v, want ZeroExact", typ, z, ok)
			continue
		}
		ti, _ := typ.Info()
		n := 64 * max(ti.BlockSize, 32)
		for _, c := range genCases {
			for seed := range uint64(4) {
				src := prunedRows(c, n, ti.BlockSize, seed)
				blocks := make([]byte, n/ti.BlockSize*ti.BlockBytes)
				back := make([]float32, n)
				if err := Encode(typ, blocks, src); err != nil {
					t.Fatal(err)
				}
				if err := Decode(typ, back, blocks); err != nil {
					t.Fatal(err)
				}
				for i, v := range src {
					if v != 0 || back[i] == 0 {
						continue
					}
					if c.name == "huge" && blockHasNonFinite(back, i, ti.BlockSize) {
						continue
					}
					t.Fatalf("%s/%s: zero at %d decodes to %v", typ, c.name, i, back[i])
				}
			}
		}
	}
}

func blockHasNonFinite(v []float32, i, bs int) bool {
	b := i / bs * bs
	for _, x := range v[b : b+bs] {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return true
		}
	}
	return false
}

// TestKeepZeros checks EncodeKeepZeros for Q4_1 and Q5_1: every 0.0 decodes
// to exactly 0.0, blocks without zeros (and blocks whose reference encoding
// already keeps the zeros) are byte-identical with the reference, and on
// Gaussian blocks with ~25 % zeros the survivors' RMSE stays within 10 % of
// the reference encoder's.
func TestKeepZeros(t *testing.T) {
	for _, typ := range []gguf.Type{gguf.TypeQ4_1, gguf.TypeQ5_1} {
		if z, ok := Zero(typ); !ok || z != ZeroPreserving {
			t.Fatalf("%s: Zero() = %v, %v, want ZeroPreserving", typ, z, ok)
		}
		ti, _ := typ.Info()
		for _, c := range genCases {
			if c.name == "huge" {
				continue // fp16 scales overflow: no grid holds these values
			}
			for seed := range uint64(4) {
				n := 32 * 64
				src := prunedRows(c, n, 32, seed)
				ref := make([]byte, n/32*ti.BlockBytes)
				kz := make([]byte, len(ref))
				back := make([]float32, n)
				if err := Encode(typ, ref, src); err != nil {
					t.Fatal(err)
				}
				if err := EncodeKeepZeros(typ, kz, src); err != nil {
					t.Fatal(err)
				}
				if err := Decode(typ, back, kz); err != nil {
					t.Fatal(err)
				}
				refBack := make([]float32, n)
				if err := Decode(typ, refBack, ref); err != nil {
					t.Fatal(err)
				}
				for b := 0; b < n/32; b++ {
					zeros, refKeeps := false, true
					for j := b * 32; j < b*32+32; j++ {
						if src[j] == 0 {
							zeros = true
							if back[j] != 0 {
								t.Fatalf("%s/%s seed %d: zero at %d decodes to %v", typ, c.name, seed, j, back[j])
							}
							refKeeps = refKeeps && refBack[j] == 0
						}
					}
					if (!zeros || refKeeps) && string(kz[b*ti.BlockBytes:(b+1)*ti.BlockBytes]) != string(ref[b*ti.BlockBytes:(b+1)*ti.BlockBytes]) {
						t.Fatalf("%s/%s: block %d needs no change but differs from the reference", typ, c.name, b)
					}
				}
			}
		}
		ratio, refRMSE, kzRMSE := keepZerosRMSE(t, typ, 4096)
		t.Logf("%s: survivor RMSE keep-zeros %.6g, reference %.6g, ratio %.4f (4096 blocks, 25%% zeros, N(0,1))", typ, kzRMSE, refRMSE, ratio)
		if ratio > 1.10 {
			t.Errorf("%s: keep-zeros survivor RMSE is %.1f%% above the reference's", typ, 100*(ratio-1))
		}
	}
}

// keepZerosRMSE measures the survivors' RMSE of EncodeKeepZeros and Encode
// on nblocks Gaussian blocks with 25 % zeros.
func keepZerosRMSE(t *testing.T, typ gguf.Type, nblocks int) (ratio, refRMSE, kzRMSE float64) {
	ti, _ := typ.Info()
	r := rand.New(rand.NewPCG(7, uint64(typ)))
	src := make([]float32, 32*nblocks)
	for i := range src {
		if r.IntN(4) != 0 {
			src[i] = float32(r.NormFloat64())
		}
	}
	var sse [2]float64
	var n int
	for k, enc := range []func(gguf.Type, []byte, []float32) error{Encode, EncodeKeepZeros} {
		blocks := make([]byte, nblocks*ti.BlockBytes)
		back := make([]float32, len(src))
		if err := enc(typ, blocks, src); err != nil {
			t.Fatal(err)
		}
		if err := Decode(typ, back, blocks); err != nil {
			t.Fatal(err)
		}
		n = 0
		for i, v := range src {
			if v != 0 {
				e := float64(v - back[i])
				sse[k] += e * e
				n++
			}
		}
	}
	refRMSE, kzRMSE = math.Sqrt(sse[0]/float64(n)), math.Sqrt(sse[1]/float64(n))
	return kzRMSE / refRMSE, refRMSE, kzRMSE
}
