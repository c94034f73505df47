package quantize

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
)

// kzFitBlocks returns nb super-blocks of every generated case (genCases),
// each with its own share of exact zeros (none, a few, most, all but one
// per sub-block, whole sub-blocks, and -0), a few with a NaN or an
// infinity.
func kzFitBlocks(nb int, seed uint64) [][]float32 {
	r := rand.New(rand.NewPCG(seed, 0x4b5a))
	var out [][]float32
	for ci, c := range genCases {
		x := genRows(c, 1, nb*kQK, kQK, seed+uint64(ci))
		for b := 0; b < nb; b++ {
			blk := x[b*kQK : (b+1)*kQK]
			switch b % 7 {
			case 0: // a few zeros
				for i := range blk {
					if r.IntN(16) == 0 {
						blk[i] = 0
					}
				}
			case 1, 2: // about a quarter
				for i := range blk {
					if r.IntN(4) == 0 {
						blk[i] = 0
					}
				}
			case 3: // most
				for i := range blk {
					if r.IntN(8) != 0 {
						blk[i] = 0
					}
				}
			case 4: // one survivor in some sub-blocks, whole sub-blocks zero
				for j := 0; j < 8; j++ {
					keep := -1
					if r.IntN(3) > 0 {
						keep = r.IntN(32)
					}
					for i := 0; i < 32; i++ {
						if i != keep {
							blk[32*j+i] = 0
						}
					}
				}
			case 5: // negative zeros, and off-centre values
				for i := range blk {
					blk[i] += blk[(i+7)%kQK] * 0.5
					if r.IntN(3) == 0 {
						blk[i] = float32(math.Copysign(0, -1))
					}
				}
			case 6: // a NaN or an infinity in a quarter of these blocks
				for i := range blk {
					if r.IntN(4) == 0 {
						blk[i] = 0
					}
				}
				if r.IntN(4) == 0 {
					blk[r.IntN(kQK)] = [3]float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))}[r.IntN(3)]
				}
			}
			out = append(out, blk)
		}
	}
	return out
}

// TestKeepZerosFitSIMDMatchesGo compares the AVX2 C search of the
// zero-preserving Q4_K and Q5_K encoders with the Go code on every block
// of kzFitBlocks: the same verdict and the same d, dmin, scale codes, min
// codes and levels, and then the same encoded bytes through
// EncodeKeepZeros.
func TestKeepZerosFitSIMDMatchesGo(t *testing.T) {
	if !simdKeepZerosFit8x32.provided {
		t.Skip("no AVX2 C search in this build or on this CPU")
	}
	nb := 40
	if testing.Short() {
		nb = 8
	}
	blocks := kzFitBlocks(nb, 7)
	for _, c := range kzFitFormats {
		fitted := kzCompareFits(t, c.typ, c.f, blocks)
		if fitted < len(blocks)/2 {
			t.Fatalf("%s: only %d of %d blocks fitted", c.typ, fitted, len(blocks))
		}
		kzCompareEncoders(t, c.typ, blocks)
		t.Logf("%s: %d of %d blocks fitted, identical", c.typ, fitted, len(blocks))
	}
}

// TestKeepZerosFitSIMDRandom compares the AVX2 C search with the Go code
// on many more blocks: those of kzFitBlocks from other seeds, and blocks
// as prune re-encodes them, the decoded values of a Q4_K or Q5_K block
// (every value on the block's grid, so that scaled values often fall on
// rounding ties) with a random share of them zeroed.
func TestKeepZerosFitSIMDRandom(t *testing.T) {
	if !simdKeepZerosFit8x32.provided {
		t.Skip("no AVX2 C search in this build or on this CPU")
	}
	seeds, grid := 6, 3000
	if testing.Short() || raceEnabled { // the Go twin runs ten times slower under -race
		seeds, grid = 1, 300
	}
	var blocks [][]float32
	for seed := range seeds {
		blocks = append(blocks, kzFitBlocks(60, uint64(100+seed))...)
	}
	r := rand.New(rand.NewPCG(11, 12))
	for _, c := range kzFitFormats {
		n, _ := c.typ.RowBytes(kQK)
		enc := make([]byte, n)
		for range grid {
			x := make([]float32, kQK)
			genCases[r.IntN(len(genCases))].fill(r, x, kQK)
			if err := Encode(c.typ, enc, x); err != nil {
				t.Fatal(err)
			}
			if err := Decode(c.typ, x, enc); err != nil {
				t.Fatal(err)
			}
			share := r.Float64()
			for i := range x {
				if r.Float64() < share {
					x[i] = 0
				}
			}
			blocks = append(blocks, x)
		}
	}
	for _, c := range kzFitFormats {
		fitted := kzCompareFits(t, c.typ, c.f, blocks)
		kzCompareEncoders(t, c.typ, blocks)
		t.Logf("%s: %d of %d blocks fitted, identical", c.typ, fitted, len(blocks))
	}
}

// kzCompareEncoders fails t unless EncodeKeepZeros writes the same bytes
// with the SIMD paths on (for Q4_K, the search and packing in C over many
// blocks at once) and off (the Go code) over all the blocks in a row.
func kzCompareEncoders(t *testing.T, typ gguf.Type, blocks [][]float32) {
	t.Helper()
	src := make([]float32, 0, len(blocks)*kQK)
	for _, x := range blocks {
		src = append(src, x...)
	}
	n, _ := typ.RowBytes(uint64(len(src)))
	on, off := make([]byte, n), make([]byte, n)
	if err := EncodeKeepZeros(typ, on, src); err != nil {
		t.Fatal(err)
	}
	if err := pureGo(func() error { return EncodeKeepZeros(typ, off, src) }); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(on); i += len(on) / len(blocks) {
		if b := on[i : i+len(on)/len(blocks)]; string(b) != string(off[i:i+len(b)]) {
			t.Fatalf("%s: EncodeKeepZeros writes other bytes for block %d with the SIMD paths", typ, i/len(b))
		}
	}
}

// kzFitFormats are the formats of the AVX2 C search.
var kzFitFormats = []struct {
	typ gguf.Type
	f   *kKZFormat
}{{gguf.TypeQ4_K, &kKZQ4K}, {gguf.TypeQ5_K, &kKZQ5K}}

// kzCompareFits fails t unless the AVX2 C search and the Go code give the
// same verdict and the same d, dmin, codes and levels on every block, and
// returns how many blocks were fitted.
func kzCompareFits(t *testing.T, typ gguf.Type, f *kKZFormat, blocks [][]float32) (fitted int) {
	t.Helper()
	for bi, x := range blocks {
		var got, want kKZResult
		okGot := simdKeepZerosFit8x32.fn(f, x, &got)
		okWant := kKeepZerosFitGo(f, x, &want)
		if okGot != okWant {
			t.Fatalf("%s block %d: AVX2 says %v, Go %v", typ, bi, okGot, okWant)
		}
		if !okWant {
			continue
		}
		fitted++
		// Only the first 8 scale and min codes belong to these formats.
		if got.hd != want.hd || got.hm != want.hm || [8]uint8(got.sc[:8]) != [8]uint8(want.sc[:8]) || [8]uint8(got.m[:8]) != [8]uint8(want.m[:8]) || got.L != want.L {
			t.Fatalf("%s block %d: AVX2 d=%#x dmin=%#x sc=%v m=%v, Go d=%#x dmin=%#x sc=%v m=%v (levels equal: %v)",
				typ, bi, got.hd, got.hm, got.sc[:8], got.m[:8], want.hd, want.hm, want.sc[:8], want.m[:8], got.L == want.L)
		}
	}
	return fitted
}
