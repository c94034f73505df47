package quantize

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/internal/ggmlref"
)

// The IQ grid encoders against ggml_quantize_chunk, with and without an
// importance matrix: every block byte for byte, on the golden recording
// and (for IQ2_S, IQ1_S and IQ1_M, whose ggml set-up is slow, only with
// -iqslow) on the live ggml.

func TestIQEncodeIQ2_XXS(t *testing.T) { checkIQEncode(t, gguf.TypeIQ2_XXS) }
func TestIQEncodeIQ2_XS(t *testing.T)  { checkIQEncode(t, gguf.TypeIQ2_XS) }
func TestIQEncodeIQ2_S(t *testing.T)   { checkIQEncode(t, gguf.TypeIQ2_S) }
func TestIQEncodeIQ3_XXS(t *testing.T) { checkIQEncode(t, gguf.TypeIQ3_XXS) }
func TestIQEncodeIQ3_S(t *testing.T)   { checkIQEncode(t, gguf.TypeIQ3_S) }
func TestIQEncodeIQ1_S(t *testing.T)   { checkIQEncode(t, gguf.TypeIQ1_S) }
func TestIQEncodeIQ1_M(t *testing.T)   { checkIQEncode(t, gguf.TypeIQ1_M) }

// iqEncodeCases are the row families of genCases the IQ encoders are
// checked on: Gaussian, Laplace and Student-t rows, zeros (runs, pruned
// weights, whole blocks), outliers, extreme but finite magnitudes (fp16
// subnormal scales, float32 subnormals, values past fp16's range), ties.
var iqEncodeCases = map[string]bool{
	"normal": true, "laplace": true, "student-t3": true, "zero-runs": true, "pruned-25": true,
	"zero-blocks": true, "outlier": true, "tiny": true, "subnormal32": true, "huge": true,
	"integers": true, "constant": true,
}

// iqExtraCases are row families of the IQ encoder tests only.
var iqExtraCases = []genCase{
	{"zero-groups", func(r *rand.Rand, row []float32, _ int) {
		// Whole sub-block groups (16 values, and so 32-value groups too)
		// at zero: ggml skips them, and IQ3_S then packs later groups early.
		s := randScale(r)
		for g := 0; g < len(row); g += 16 {
			zero := r.IntN(3) == 0
			for i := g; i < g+16 && i < len(row); i++ {
				row[i] = 0
				if !zero {
					row[i] = float32(r.NormFloat64() * s)
				}
			}
		}
	}},
}

// iqSlowSetUp are the types whose ggml grid set-up takes seconds.
func iqSlowSetUp(typ gguf.Type) bool {
	return typ == gguf.TypeIQ2_S || typ == gguf.TypeIQ1_S || typ == gguf.TypeIQ1_M
}

// iqTestWeights returns an importance matrix row of n columns: "none" is
// nil, "imatrix" positive values spread over three decades (as
// llama-imatrix's mean squared activations are), "imatrix-sparse" the same
// with a quarter of the columns at 0 (columns no token reached).
func iqTestWeights(mode string, n int, seed uint64) []float32 {
	if mode == "none" {
		return nil
	}
	r := rand.New(rand.NewPCG(seed, 0x1a7))
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(math.Exp(1.5 * r.NormFloat64()))
		if mode == "imatrix-sparse" && r.IntN(4) == 0 {
			w[i] = 0
		}
	}
	return w
}

func checkIQEncode(t *testing.T, typ gguf.Type) {
	t.Helper()
	withReferences(t, func(t *testing.T, ref *reference) {
		if iqSlowSetUp(typ) && !*iqSlowFlag {
			if !ref.golden() {
				t.Skip("ggml's set-up for this type is slow: run with -iqslow")
			}
			ref = &reference{lib: ref.lib, gold: ref.gold, spareLive: true}
		}
		checkIQEncodeWith(t, ref, typ)
	})
}

func checkIQEncodeWith(t *testing.T, ref *reference, typ gguf.Type) {
	ti, _ := typ.Info()
	shapes := [][2]int{{1, 256}, {2, 512}}
	if !ref.golden() {
		shapes = [][2]int{{1, 256}, {3, 768}, {2, 2048}}
	}
	modes := []string{"none", "imatrix"}
	if NeedsWeights(typ) {
		modes = []string{"imatrix", "imatrix-sparse"}
	}
	for _, c := range append(genCases, iqExtraCases...) {
		if !iqEncodeCases[c.name] && !slices.ContainsFunc(iqExtraCases, func(e genCase) bool { return e.name == c.name }) {
			continue
		}
		for _, sh := range shapes {
			for _, mode := range modes {
				t.Run(fmt.Sprintf("%s/%s/%dx%d", c.name, mode, sh[0], sh[1]), func(t *testing.T) {
					seed := uint64(sh[0]*sh[1]) + uint64(typ)
					src := genRows(c, sh[0], sh[1], ti.BlockSize, seed)
					w := iqTestWeights(mode, sh[1], seed)
					want, err := ref.encodedWeighted(t, typ, src, w, sh[0], sh[1])
					if err != nil {
						t.Fatalf("ggml: %v", err)
					}
					got := make([]byte, len(want))
					for i := range got {
						got[i] = 0xA5 // every byte must be written
					}
					if err := EncodeWeighted(typ, got, src, w); err != nil {
						t.Fatal(err)
					}
					if b := firstBlockDiff(got, want, ti.BlockBytes); b >= 0 {
						lo, hi := b*ti.BlockBytes, (b+1)*ti.BlockBytes
						t.Fatalf("encode %s (%s): block %d (row %d) differs from ggml_quantize_chunk:\n  ours %s\n  ggml %s\n  input %s",
							typ, mode, b, b*ti.BlockSize/sh[1], hex.EncodeToString(got[lo:hi]), hex.EncodeToString(want[lo:hi]),
							fmtValues(src[b*ti.BlockSize:(b+1)*ti.BlockSize]))
					}
				})
			}
		}
	}
}

// encodedWeighted returns the bytes ggml_quantize_chunk writes for nrows
// rows of ncols values of src with the importance matrix w (nil: none).
func (r *reference) encodedWeighted(t *testing.T, typ gguf.Type, src, w []float32, nrows, ncols int) ([]byte, error) {
	t.Helper()
	ti, _ := typ.Info()
	in := append(append([]float32(nil), src...), w...)
	return r.encodedBy(t, "encode-imatrix", typ, []int{nrows, ncols, len(w)}, in, len(src)/ti.BlockSize*ti.BlockBytes,
		func(dst []byte) error { return r.lib.QuantizeImatrix(typ, dst, src, nrows, ncols, w) })
}

// TestIQEncodeAPI: which grid types need weights (ggml's own list when the
// runtime is loaded), the errors for missing or misshapen weights, and the
// capability table.
func TestIQEncodeAPI(t *testing.T) {
	want := map[gguf.Type]bool{gguf.TypeIQ2_XXS: true, gguf.TypeIQ2_XS: true, gguf.TypeIQ1_S: true}
	var lib *ggmlref.Lib
	if l, err := ggmlref.Load(); err == nil {
		lib = l
	}
	for _, typ := range iqGridTypes {
		ti, _ := typ.Info()
		if !CanDecode(typ) || !CanEncode(typ) || !CanEncodeWeighted(typ) {
			t.Errorf("%s: CanDecode %v CanEncode %v CanEncodeWeighted %v, want all true", typ, CanDecode(typ), CanEncode(typ), CanEncodeWeighted(typ))
		}
		if z, ok := Zero(typ); !ok || z != ZeroNone {
			t.Errorf("%s: Zero = %v, %v, want ZeroNone, true", typ, z, ok)
		}
		if NeedsWeights(typ) != want[typ] {
			t.Errorf("%s: NeedsWeights = %v", typ, NeedsWeights(typ))
		}
		if lib != nil && lib.RequiresImatrix(typ) != NeedsWeights(typ) {
			t.Errorf("%s: NeedsWeights = %v, ggml_quantize_requires_imatrix = %v", typ, NeedsWeights(typ), lib.RequiresImatrix(typ))
		}
		src := make([]float32, 2*ti.BlockSize)
		dst := make([]byte, 2*ti.BlockBytes)
		err := Encode(typ, dst, src)
		if NeedsWeights(typ) {
			if !errors.Is(err, ErrNeedsWeights) || !strings.Contains(err.Error(), typ.String()) {
				t.Errorf("Encode(%s) = %v, want ErrNeedsWeights naming the type", typ, err)
			}
			if err := EncodeWeighted(typ, dst, src, nil); !errors.Is(err, ErrNeedsWeights) {
				t.Errorf("EncodeWeighted(%s, nil weights) = %v, want ErrNeedsWeights", typ, err)
			}
		} else if err != nil {
			t.Errorf("Encode(%s) = %v", typ, err)
		}
		for _, n := range []int{ti.BlockSize / 2, 3 * ti.BlockSize, 0} {
			w := make([]float32, n)
			if n == 0 {
				w = []float32{}
			}
			if err := EncodeWeighted(typ, dst, src, w); err == nil || !strings.Contains(err.Error(), typ.String()) {
				t.Errorf("EncodeWeighted(%s) with %d weights for rows of %d: %v, want an error naming the type", typ, n, len(src), err)
			}
		}
		w := make([]float32, ti.BlockSize)
		if err := EncodeWeighted(typ, dst[1:], src, w); err == nil {
			t.Errorf("EncodeWeighted(%s) into a short buffer: no error", typ)
		}
		if err := EncodeWeighted(typ, dst, src, w); err != nil {
			t.Errorf("EncodeWeighted(%s): %v", typ, err)
		}
		if err := EncodeKeepZeros(typ, dst, src); err != nil {
			t.Errorf("EncodeKeepZeros(%s): %v", typ, err)
		}
	}
	var ue *UnsupportedError
	if err := EncodeWeighted(gguf.TypeQ4_0, make([]byte, 18), make([]float32, 32), make([]float32, 32)); !errors.As(err, &ue) {
		t.Errorf("EncodeWeighted(Q4_0, weights) = %v, want *UnsupportedError", err)
	}
}

// TestIQEncodeNonFinite: NaN, infinities, float32's extremes and hostile
// importance weights (NaN, Inf, negative, all zero) never panic an IQ
// encoder (ggml aborts on some of them), and every byte is written.
func TestIQEncodeNonFinite(t *testing.T) {
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	specials := []float32{nan, inf, -inf, math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, 0, 1}
	r := rand.New(rand.NewPCG(3, 4))
	for _, typ := range iqGridTypes {
		ti, _ := typ.Info()
		for trial := 0; trial < 40; trial++ {
			src := make([]float32, 2*ti.BlockSize)
			for i := range src {
				src[i] = float32(r.NormFloat64())
				if r.IntN(8) == 0 || trial%4 == 0 {
					src[i] = specials[r.IntN(len(specials))]
				}
			}
			w := make([]float32, ti.BlockSize)
			for i := range w {
				w[i] = float32(r.ExpFloat64())
				if trial%3 == 0 {
					w[i] = []float32{nan, inf, -1, 0}[r.IntN(4)]
				}
				if trial%5 == 0 {
					w[i] = 0
				}
			}
			// Two runs over buffers of different fill must agree: every
			// byte is written.
			for name, enc := range map[string]func(dst []byte) error{
				"EncodeWeighted":  func(dst []byte) error { return EncodeWeighted(typ, dst, src, w) },
				"EncodeKeepZeros": func(dst []byte) error { return EncodeKeepZeros(typ, dst, src) },
			} {
				var out [2][]byte
				for k, fill := range []byte{0xA5, 0x5A} {
					out[k] = bytes.Repeat([]byte{fill}, 2*ti.BlockBytes)
					if err := enc(out[k]); err != nil {
						t.Fatalf("%s %s: %v", name, typ, err)
					}
				}
				if !bytes.Equal(out[0], out[1]) {
					t.Fatalf("%s %s: not every byte written", name, typ)
				}
			}
		}
	}
}

// TestIQKeepZeros: EncodeKeepZeros of an IQ grid type is ggml's weighted
// encoder with importance 1 for a nonzero value and iqZeroWeight for a
// zero; no zero reads back as 0 (the grids have no zero) except in an
// all-zero block, and the zero weight pulls killed weights nearer zero
// than the flat imatrix does (Gaussian blocks, half the weights killed).
// It logs the largest and mean |value| at killed positions relative to
// the largest |value| of their block, and the survivors' RMSE.
func TestIQKeepZeros(t *testing.T) {
	for _, typ := range iqGridTypes {
		ti, _ := typ.Info()
		r := rand.New(rand.NewPCG(5, 6))
		const nb = 64
		src := make([]float32, nb*ti.BlockSize)
		kill := make([]bool, len(src))
		for i := range src {
			kill[i] = r.IntN(2) == 0
			if !kill[i] {
				src[i] = float32(r.NormFloat64())
			}
		}
		clear(src[:ti.BlockSize]) // one all-zero block
		qw := make([]float32, len(src))
		flat := make([]float32, len(src))
		for i, v := range src {
			qw[i], flat[i] = 1, 1
			if v == 0 {
				qw[i] = iqZeroWeight
			}
		}
		type stats struct{ max, mean, rmse float64 }
		measure := func(name string, enc func(dst []byte) error) stats {
			dst := make([]byte, nb*ti.BlockBytes)
			if err := enc(dst); err != nil {
				t.Fatalf("%s %s: %v", name, typ, err)
			}
			back := make([]float32, len(src))
			if err := Decode(typ, back, dst); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < ti.BlockSize; i++ {
				if back[i] != 0 {
					t.Fatalf("%s %s: the all-zero block reads back %v at %d", name, typ, back[i], i)
				}
			}
			var s stats
			var sum, se float64
			var nk, ns int
			for b := 1; b < nb; b++ {
				blk := back[b*ti.BlockSize : (b+1)*ti.BlockSize]
				var bm float64
				for _, v := range blk {
					bm = math.Max(bm, math.Abs(float64(v)))
				}
				for j, v := range blk {
					i := b*ti.BlockSize + j
					if !kill[i] {
						d := float64(v - src[i])
						se += d * d
						ns++
						continue
					}
					if v == 0 {
						t.Fatalf("%s %s: killed weight %d reads back as 0, which the grid cannot hold", name, typ, i)
					}
					rel := math.Abs(float64(v)) / bm
					s.max = math.Max(s.max, rel)
					sum += rel
					nk++
				}
			}
			s.mean, s.rmse = sum/float64(nk), math.Sqrt(se/float64(ns))
			return s
		}
		kz := measure("EncodeKeepZeros", func(dst []byte) error { return EncodeKeepZeros(typ, dst, src) })
		boosted := make([]byte, nb*ti.BlockBytes)
		kept := make([]byte, nb*ti.BlockBytes)
		codecs[typ].encodeWeighted(boosted, src, qw)
		if err := EncodeKeepZeros(typ, kept, src); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(kept, boosted) {
			t.Errorf("%s: EncodeKeepZeros is not the weighted encoder with zero weight %d", typ, iqZeroWeight)
		}
		fl := measure("flat imatrix", func(dst []byte) error { return EncodeWeighted(typ, dst, src, flat[:ti.BlockSize]) })
		if kz.mean >= fl.mean {
			t.Errorf("%s: killed weights land at %.4f of their block's largest value on average, %.4f with the flat imatrix: the zero weight does not help", typ, kz.mean, fl.mean)
		}
		t.Logf("%-7s killed |value| / block max: keep-zeros max %.3f mean %.4f (flat imatrix: max %.3f mean %.4f); survivor RMSE %.4f (flat %.4f)",
			typ, kz.max, kz.mean, fl.max, fl.mean, kz.rmse, fl.rmse)
	}
}

// TestEncodeKeepZerosWeighted: with every weight 1 EncodeKeepZerosWeighted
// is EncodeKeepZeros byte for byte; with imatrix-like weights (one per
// column, log-normal, rows of 1024 values, a third of the weights killed)
// it writes other bytes, and its error weighted by the importance it was
// given (times iqZeroWeight at a zero) is smaller than EncodeKeepZeros'
// over the whole set. A type without a weighted encoder ignores weights.
func TestEncodeKeepZerosWeighted(t *testing.T) {
	const cols, rows = 1024, 16
	r := rand.New(rand.NewPCG(7, 8))
	col := make([]float32, cols)
	for j := range col {
		col[j] = float32(math.Exp(1.5 * r.NormFloat64()))
	}
	src := make([]float32, cols*rows)
	qw := make([]float32, len(src))
	ones := make([]float32, len(src))
	for i := range src {
		if r.IntN(3) != 0 {
			src[i] = float32(r.NormFloat64())
		}
		qw[i], ones[i] = col[i%cols], 1
	}
	for _, typ := range append([]gguf.Type{gguf.TypeQ4_K}, iqGridTypes...) {
		ti, _ := typ.Info()
		n := len(src) / ti.BlockSize * ti.BlockBytes
		plain, flat, weighted := make([]byte, n), make([]byte, n), make([]byte, n)
		if err := EncodeKeepZeros(typ, plain, src); err != nil {
			t.Fatal(err)
		}
		if err := EncodeKeepZerosWeighted(typ, flat, src, ones); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(plain, flat) {
			t.Errorf("%s: EncodeKeepZerosWeighted with every weight 1 is not EncodeKeepZeros", typ)
		}
		if err := EncodeKeepZerosWeighted(typ, weighted, src, qw); err != nil {
			t.Fatal(err)
		}
		if !CanEncodeWeighted(typ) {
			if !bytes.Equal(plain, weighted) {
				t.Errorf("%s: has no weighted encoder, yet the weights changed its bytes", typ)
			}
			continue
		}
		if bytes.Equal(plain, weighted) {
			t.Errorf("%s: the importance weights changed no byte", typ)
		}
		werr := func(enc []byte) float64 {
			back := make([]float32, len(src))
			if err := Decode(typ, back, enc); err != nil {
				t.Fatal(err)
			}
			var e float64
			for i, v := range back {
				w := float64(qw[i])
				if src[i] == 0 {
					w *= iqZeroWeight
				}
				d := float64(v - src[i])
				e += w * d * d
			}
			return e
		}
		ew, ep := werr(weighted), werr(plain)
		t.Logf("%s: weighted error %.4g with the weights, %.4g without", typ, ew, ep)
		if ew >= ep {
			t.Errorf("%s: weighted error %.4g with the weights is not below %.4g without", typ, ew, ep)
		}
	}
	if err := EncodeKeepZerosWeighted(gguf.TypeIQ2_XXS, make([]byte, 66), src[:256], qw[:255]); err == nil {
		t.Error("255 weights for 256 values: no error")
	}
}
