package quantize

// The parity framework: every codec is checked against ggml itself (through
// internal/ggmlref) on many seeded random rows. A codec file's test calls
//
//	func TestParityQ4_0(t *testing.T) { checkParity(t, gguf.TypeQ4_0) }
//
// and gets, for each generated case and row shape, a byte-for-byte comparison
// of Encode with ggml_quantize_chunk and a bit-for-bit comparison of Decode
// with ggml's to_float, on the reference's bytes and on random bytes.

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/internal/ggmlref"
)

// oracle returns the loaded ggml, skipping the test only when
// PHYSARIUM_LLAMA is unset or the build has no cgo; any other load error
// fails the test.
func oracle(t testing.TB) *ggmlref.Lib {
	t.Helper()
	l, err := ggmlref.Load()
	if errors.Is(err, ggmlref.ErrNoLlama) || errors.Is(err, ggmlref.ErrNoCgo) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// genCase is one family of generated rows.
type genCase struct {
	name string
	// fill writes len(row) values; blockSize is the type's block size, so a
	// case can shape its values per block (zero blocks, one outlier each).
	fill func(r *rand.Rand, row []float32, blockSize int)
}

// genCases are the row families checkParity runs by default.
var genCases = []genCase{
	{"normal", func(r *rand.Rand, row []float32, _ int) {
		s := randScale(r)
		for i := range row {
			row[i] = float32(r.NormFloat64() * s)
		}
	}},
	{"laplace", func(r *rand.Rand, row []float32, _ int) {
		s := randScale(r)
		for i := range row {
			e := r.ExpFloat64()
			if r.IntN(2) == 0 {
				e = -e
			}
			row[i] = float32(e * s)
		}
	}},
	{"student-t3", func(r *rand.Rand, row []float32, _ int) {
		s := randScale(r)
		for i := range row {
			row[i] = float32(studentT3(r) * s)
		}
	}},
	{"zero-runs", func(r *rand.Rand, row []float32, _ int) {
		s := randScale(r)
		for i := 0; i < len(row); {
			n := 1 + r.IntN(12)
			zero := r.IntN(3) == 0
			for ; n > 0 && i < len(row); n, i = n-1, i+1 {
				if zero {
					row[i] = 0
				} else {
					row[i] = float32(r.NormFloat64() * s)
				}
			}
		}
	}},
	{"pruned-25", func(r *rand.Rand, row []float32, _ int) {
		s := randScale(r)
		for i := range row {
			if r.IntN(4) == 0 {
				row[i] = 0
			} else {
				row[i] = float32(r.NormFloat64() * s)
			}
		}
	}},
	{"zero-blocks", func(r *rand.Rand, row []float32, bs int) {
		s := randScale(r)
		for b := 0; b < len(row); b += bs {
			zero := r.IntN(2) == 0
			for i := b; i < b+bs && i < len(row); i++ {
				if zero {
					row[i] = 0
				} else {
					row[i] = float32(r.NormFloat64() * s)
				}
			}
		}
		if r.IntN(4) == 0 {
			clear(row)
		}
	}},
	{"outlier", func(r *rand.Rand, row []float32, bs int) {
		s := randScale(r)
		for i := range row {
			row[i] = float32(r.NormFloat64() * s)
		}
		for b := 0; b < len(row); b += bs {
			n := min(bs, len(row)-b)
			k := b + r.IntN(n)
			row[k] = float32(s * (50 + 950*r.Float64()) * float64(1-2*r.IntN(2)))
		}
	}},
	{"tiny", func(r *rand.Rand, row []float32, _ int) {
		// Magnitudes from 2^-28 to 2^-12: fp16 subnormals start below 2^-14.
		for i := range row {
			row[i] = float32(r.NormFloat64() * math.Ldexp(1, -28+r.IntN(17)))
		}
	}},
	{"positive", func(r *rand.Rand, row []float32, _ int) {
		s := randScale(r)
		off := r.Float64() * 3 * s
		for i := range row {
			row[i] = float32(math.Abs(r.NormFloat64())*s + off)
		}
	}},
	{"negative", func(r *rand.Rand, row []float32, _ int) {
		s := randScale(r)
		off := r.Float64() * 3 * s
		for i := range row {
			row[i] = -float32(math.Abs(r.NormFloat64())*s + off)
		}
	}},
	{"constant", func(r *rand.Rand, row []float32, bs int) {
		for b := 0; b < len(row); b += bs {
			v := float32(r.NormFloat64() * randScale(r))
			for i := b; i < b+bs && i < len(row); i++ {
				row[i] = v
			}
		}
	}},
	{"integers", func(r *rand.Rand, row []float32, _ int) {
		// Small integers hit rounding ties (x.5 after scaling) often.
		k := 1 + r.IntN(40)
		for i := range row {
			row[i] = float32(r.IntN(2*k+1) - k)
		}
	}},
	{"subnormal32", func(r *rand.Rand, row []float32, _ int) {
		// float32 subnormals and the smallest normals: scales underflow to
		// zero and reciprocals overflow to Inf.
		for i := range row {
			row[i] = float32(r.NormFloat64() * math.Ldexp(1, -140+r.IntN(20)))
		}
	}},
	{"huge", func(r *rand.Rand, row []float32, _ int) {
		// Beyond fp16's range: scales overflow to Inf in several formats.
		for i := range row {
			row[i] = float32(r.NormFloat64() * math.Ldexp(1, 10+r.IntN(16)))
		}
	}},
}

// randScale picks a per-row scale between 2^-12 and 2^6.
func randScale(r *rand.Rand) float64 { return math.Ldexp(1+r.Float64(), -12+r.IntN(19)) }

// studentT3 draws from Student's t with 3 degrees of freedom.
func studentT3(r *rand.Rand) float64 {
	z := r.NormFloat64()
	var chi float64
	for range 3 {
		n := r.NormFloat64()
		chi += n * n
	}
	return z / math.Sqrt(chi/3)
}

// genRows returns nrows*ncols values of case c, reproducible from seed.
func genRows(c genCase, nrows, ncols, blockSize int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, uint64(len(c.name))*0x9e3779b97f4a7c15))
	out := make([]float32, nrows*ncols)
	for i := range nrows {
		c.fill(r, out[i*ncols:(i+1)*ncols], blockSize)
	}
	return out
}

// parityConfig holds checkParity's options.
type parityConfig struct {
	cases        map[string]bool // nil: all
	skipCases    map[string]bool
	shapes       [][2]int // {nrows, ncols}; nil: derived from the block size
	randomBlocks int
	fixBlock     func(block []byte)
	noRandom     bool
	seeds        int
}

// parityOption adjusts checkParity.
type parityOption func(*parityConfig)

// parityOnly restricts checkParity to the named cases of genCases.
func parityOnly(names ...string) parityOption {
	return func(c *parityConfig) {
		c.cases = map[string]bool{}
		for _, n := range names {
			c.cases[n] = true
		}
	}
}

// paritySkip leaves out the named cases of genCases.
func paritySkip(names ...string) parityOption {
	return func(c *parityConfig) {
		for _, n := range names {
			c.skipCases[n] = true
		}
	}
}

// parityShapes replaces the default row shapes with {nrows, ncols} pairs.
func parityShapes(shapes ...[2]int) parityOption {
	return func(c *parityConfig) { c.shapes = shapes }
}

// paritySeeds sets how many seeds run per case and shape (default 2).
func paritySeeds(n int) parityOption { return func(c *parityConfig) { c.seeds = n } }

// parityRandomBlocks sets how many random-byte blocks are decoded (default
// 4096); fix, when not nil, is applied to each random block first, for
// formats where not every bit pattern is a valid block.
func parityRandomBlocks(n int, fix func(block []byte)) parityOption {
	return func(c *parityConfig) { c.randomBlocks, c.fixBlock = n, fix }
}

// parityNoRandomDecode skips decoding random bytes.
func parityNoRandomDecode() parityOption { return func(c *parityConfig) { c.noRandom = true } }

// checkParity compares the codec registered for typ with ggml: Encode with
// ggml_quantize_chunk byte for byte, Decode with to_float bit for bit (NaN
// payloads included), for every generated case and several row shapes, and
// Decode of random bytes. It reports the first mismatch of each subtest with
// its row, block index, the two blocks' bytes and the input block. It runs
// against the golden file (a smaller data set: every case, one seed, two
// shapes, fewer random blocks; options that only spare the live ggml's time
// do not apply) and against the live ggml, as withReferences does.
func checkParity(t *testing.T, typ gguf.Type, opts ...parityOption) {
	t.Helper()
	withReferences(t, func(t *testing.T, ref *reference) { checkParityWith(t, ref, typ, opts...) })
}

func checkParityWith(t *testing.T, ref *reference, typ gguf.Type, opts ...parityOption) {
	t.Helper()
	ti, ok := typ.Info()
	if !ok {
		t.Fatalf("unknown type %v", typ)
	}
	if !CanDecode(typ) && !CanEncode(typ) {
		t.Fatalf("no codec registered for %s", typ)
	}
	cfg := parityConfig{skipCases: map[string]bool{}, randomBlocks: 4096, seeds: 2}
	for _, o := range opts {
		o(&cfg)
	}
	shapes := cfg.shapes
	if ref.golden() {
		ref = &reference{lib: ref.lib, gold: ref.gold, spareLive: cfg.cases != nil}
		cfg.cases, cfg.seeds, shapes = nil, 1, goldenShapes(ti.BlockSize)
		cfg.randomBlocks = min(cfg.randomBlocks, max(64, 4096/ti.BlockBytes))
	} else if shapes == nil {
		shapes = liveShapes(ti.BlockSize)
	}
	for _, c := range genCases {
		if cfg.cases != nil && !cfg.cases[c.name] || cfg.skipCases[c.name] {
			continue
		}
		for _, sh := range shapes {
			for seed := range cfg.seeds {
				name := fmt.Sprintf("%s/%dx%d/seed%d", c.name, sh[0], sh[1], seed)
				t.Run(name, func(t *testing.T) {
					src := genRows(c, sh[0], sh[1], ti.BlockSize, uint64(seed)*7919+uint64(sh[1])*31+uint64(sh[0]))
					parityRows(t, ref, typ, ti, src, sh[0], sh[1])
				})
			}
		}
	}
	if CanDecode(typ) && !cfg.noRandom {
		t.Run("random-bytes", func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(typ), 12345))
			src := make([]byte, cfg.randomBlocks*ti.BlockBytes)
			for i := range src {
				src[i] = byte(r.Uint32())
			}
			if cfg.fixBlock != nil {
				for b := 0; b < len(src); b += ti.BlockBytes {
					cfg.fixBlock(src[b : b+ti.BlockBytes])
				}
			}
			compareDecode(t, ref, typ, ti, src, nil)
		})
	}
}

// liveShapes are the row shapes {nrows, ncols} checked against the live ggml.
func liveShapes(bs int) [][2]int {
	if bs == 1 {
		return [][2]int{{1, 1}, {3, 7}, {2, 256}, {4, 1000}}
	}
	shapes := [][2]int{{1, bs}, {3, 3 * bs}, {2, 8 * bs}}
	if bs <= 64 {
		return append(shapes, [2]int{4, 4096})
	}
	return append(shapes, [2]int{2, 16 * bs})
}

// goldenShapes are the row shapes of the golden files: a single block and a
// few rows of a few blocks.
func goldenShapes(bs int) [][2]int {
	if bs == 1 {
		return [][2]int{{1, 1}, {3, 7}, {2, 64}}
	}
	if bs >= 256 {
		return [][2]int{{1, bs}, {2, 2 * bs}}
	}
	return [][2]int{{1, bs}, {3, 3 * bs}}
}

// parityRows runs the encode and decode comparisons on one set of rows.
func parityRows(t *testing.T, r *reference, typ gguf.Type, ti gguf.TypeInfo, src []float32, nrows, ncols int) {
	t.Helper()
	nbytes := len(src) / ti.BlockSize * ti.BlockBytes
	ref, err := r.encoded(t, typ, src, nrows, ncols)
	if err != nil {
		if CanEncode(typ) && !NeedsWeights(typ) {
			t.Fatalf("ggml: %v", err)
		}
		return // ggml cannot quantize the type without an imatrix: random bytes cover decoding, iq_encode_test.go encoding
	}
	if CanEncode(typ) {
		for _, simd := range r.simdSettings() {
			got := make([]byte, nbytes)
			for i := range got {
				got[i] = 0xA5 // every byte must be written
			}
			was := SetSIMD(simd)
			err := Encode(typ, got, src)
			SetSIMD(was)
			if err != nil {
				t.Fatal(err)
			}
			if b := firstBlockDiff(got, ref, ti.BlockBytes); b >= 0 {
				lo, hi := b*ti.BlockBytes, (b+1)*ti.BlockBytes
				vals := src[b*ti.BlockSize : (b+1)*ti.BlockSize]
				t.Fatalf("encode %s (simd %v): block %d (row %d) differs from ggml_quantize_chunk:\n  ours %s\n  ggml %s\n  input %s",
					typ, simd, b, b*ti.BlockSize/ncols, hex.EncodeToString(got[lo:hi]), hex.EncodeToString(ref[lo:hi]), fmtValues(vals))
			}
		}
	}
	if CanDecode(typ) {
		compareDecode(t, r, typ, ti, ref, src)
	}
}

// compareDecode decodes blocks with ours and compares the bits with ggml's
// to_float (the live values, and in the golden run the recorded hashes of
// each group of values); orig, when not nil, is what the blocks were encoded
// from.
func compareDecode(t *testing.T, ref *reference, typ gguf.Type, ti gguf.TypeInfo, blocks []byte, orig []float32) {
	t.Helper()
	want, group, hashes := ref.decoded(t, typ, ti, blocks)
	for _, simd := range ref.simdSettings() {
		got := make([]float32, len(blocks)/ti.BlockBytes*ti.BlockSize)
		for i := range got {
			got[i] = math.Float32frombits(0x7fa5a5a5) // every value must be written
		}
		was := SetSIMD(simd)
		err := Decode(typ, got, blocks)
		SetSIMD(was)
		if err != nil {
			t.Fatal(err)
		}
		if want != nil {
			compareDecodedValues(t, typ, ti, blocks, orig, got, want)
		}
		if hashes != nil {
			compareDecodedHashes(t, typ, ti, blocks, got, group, hashes)
		}
	}
}

// compareDecodedValues fails at the first value whose bits differ.
func compareDecodedValues(t *testing.T, typ gguf.Type, ti gguf.TypeInfo, blocks []byte, orig, got, want []float32) {
	t.Helper()
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			b := i / ti.BlockSize
			lo, hi := b*ti.BlockBytes, (b+1)*ti.BlockBytes
			msg := fmt.Sprintf("decode %s: value %d (block %d, index %d in block) is %v (%08x), ggml to_float gives %v (%08x)\n  block %s",
				typ, i, b, i%ti.BlockSize, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]),
				hex.EncodeToString(blocks[lo:hi]))
			if orig != nil {
				msg += "\n  encoded from " + fmtValues(orig[b*ti.BlockSize:(b+1)*ti.BlockSize])
			}
			t.Fatal(msg)
		}
	}
}

// compareDecodedHashes fails at the first group of values whose hash differs
// from the golden record of ggml's.
func compareDecodedHashes(t *testing.T, typ gguf.Type, ti gguf.TypeInfo, blocks []byte, got []float32, group int, hashes []byte) {
	t.Helper()
	mine := groupHashes(got, group)
	if len(mine) != len(hashes) {
		t.Fatalf("decode %s: %d hash groups, the golden record has %d", typ, len(mine)/8, len(hashes)/8)
	}
	for k := 0; k < len(mine); k += 8 {
		if !bytes.Equal(mine[k:k+8], hashes[k:k+8]) {
			lo := k / 8 * group
			hi := min(lo+group, len(got))
			b0, b1 := lo/ti.BlockSize, (hi+ti.BlockSize-1)/ti.BlockSize
			t.Fatalf("decode %s: values %d..%d (blocks %d..%d) differ from ggml's to_float in the golden record (run with PHYSARIUM_LLAMA for the value):\n  blocks %s\n  ours %s",
				typ, lo, hi-1, b0, b1-1, hex.EncodeToString(blocks[b0*ti.BlockBytes:b1*ti.BlockBytes]), fmtValues(got[lo:hi]))
		}
	}
}

// firstBlockDiff returns the index of the first block where a and b differ,
// or -1.
func firstBlockDiff(a, b []byte, blockBytes int) int {
	for i := range a {
		if a[i] != b[i] {
			return i / blockBytes
		}
	}
	return -1
}

func fmtValues(v []float32) string {
	var sb strings.Builder
	sb.WriteByte('[')
	for i, x := range v {
		if i > 0 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "%g", x)
	}
	sb.WriteByte(']')
	return sb.String()
}
