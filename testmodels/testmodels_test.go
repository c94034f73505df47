package testmodels

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	parser "github.com/gpustack/gguf-parser-go"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/quantize"
)

// small returns a quick config of type t whose dims suit 32-blocks.
func small(t gguf.Type) Config {
	c := DefaultConfig()
	c.Embd, c.FF, c.Heads, c.KVHeads, c.Vocab = 64, 128, 4, 2, 300
	c.Type = t
	return c
}

func write(t *testing.T, c Config) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "m.gguf")
	if err := Write(p, c, gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSameConfigSameBytes(t *testing.T) {
	for _, typ := range []gguf.Type{gguf.TypeF32, gguf.TypeF16} {
		if !SupportedType(typ) {
			t.Logf("skip %s: no encoder yet", typ)
			continue
		}
		c := small(typ)
		a, b := readFile(t, write(t, c)), readFile(t, write(t, c))
		if !bytes.Equal(a, b) {
			t.Errorf("%s: two writes of the same config differ", typ)
		}
		c.Seed++
		d := readFile(t, write(t, c))
		if len(d) != len(a) {
			t.Fatalf("%s: another seed changed the size: %d vs %d", typ, len(d), len(a))
		}
		if bytes.Equal(a, d) {
			t.Errorf("%s: another seed gave the same bytes", typ)
		}
		c.Seed--
		c.Dist = "t3"
		if bytes.Equal(a, readFile(t, write(t, c))) {
			t.Errorf("%s: another distribution gave the same bytes", typ)
		}
	}
}

// f16Round rounds x to the nearest IEEE half (ties to even), computed
// independently of any encoder: in float64, a multiple of the half's ulp.
func f16Round(x float32) float32 {
	a := math.Abs(float64(x))
	if a == 0 || math.IsNaN(a) {
		return x
	}
	e := math.Floor(math.Log2(a))
	if e < -14 {
		e = -14 // subnormal halves share the ulp 2^-24
	}
	ulp := math.Ldexp(1, int(e)-10)
	r := math.RoundToEven(float64(x)/ulp) * ulp
	if math.Abs(r) > 65504 {
		return float32(math.Inf(int(math.Copysign(1, r))))
	}
	return float32(r)
}

// bf16Round rounds x to the nearest bfloat16 (ties to even) in float64.
func bf16Round(x float32) float32 {
	a := math.Abs(float64(x))
	if a == 0 || math.IsNaN(a) {
		return x
	}
	e := math.Floor(math.Log2(a))
	if e < -126 {
		e = -126
	}
	ulp := math.Ldexp(1, int(e)-7)
	return float32(math.RoundToEven(float64(x)/ulp) * ulp)
}

func TestF16AndBF16AreRoundedF32Twin(t *testing.T) {
	for _, tc := range []struct {
		typ   gguf.Type
		round func(float32) float32
	}{{gguf.TypeF16, f16Round}, {gguf.TypeBF16, bf16Round}} {
		if !SupportedType(tc.typ) || !quantize.CanDecode(tc.typ) {
			t.Logf("skip %s: no codec yet", tc.typ)
			continue
		}
		c := small(tc.typ)
		c.Dist = "laplace"
		twin := c
		twin.Type = gguf.TypeF32
		f, err := gguf.Open(write(t, c))
		if err != nil {
			t.Fatal(err)
		}
		g, err := gguf.Open(write(t, twin))
		if err != nil {
			t.Fatal(err)
		}
		for i, ti := range f.Tensors {
			tw := g.Tensors[i]
			if ti.Name != tw.Name || !equalShape(ti.Shape, tw.Shape) {
				t.Fatalf("%s: tensor %d is %s %v, twin has %s %v", tc.typ, i, ti.Name, ti.Shape, tw.Name, tw.Shape)
			}
			want := decodeAll(t, g, tw)
			got := decodeAll(t, f, ti)
			if len(ti.Shape) == 1 && ti.Type != gguf.TypeF32 {
				t.Errorf("%s: 1-D tensor %s is %s, want F32", tc.typ, ti.Name, ti.Type)
			}
			for j := range want {
				w := want[j]
				if ti.Type == tc.typ {
					w = tc.round(w)
				}
				if math.Float32bits(got[j]) != math.Float32bits(w) {
					t.Fatalf("%s: %s[%d] = %g, want %g (twin value %g)", tc.typ, ti.Name, j, got[j], w, want[j])
				}
			}
		}
		f.Close()
		g.Close()
	}
}

// TestEveryTypeEncodesTheTwinValues checks, for every type that can be
// written now, that each tensor holds quantize.Encode of Values.
func TestEveryTypeEncodesTheTwinValues(t *testing.T) {
	for _, typ := range gguf.Types() {
		if !SupportedType(typ) {
			continue
		}
		c := small(typ)
		c.Layers = 1
		if ti, _ := typ.Info(); ti.BlockSize > 32 {
			c.Embd, c.FF = 256, 256
		}
		c.Experts, c.ExpertsUsed = 2, 1
		f, err := gguf.Open(write(t, c))
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		for _, ti := range f.Tensors {
			vals, err := Values(c, ti.Name)
			if err != nil {
				t.Fatal(err)
			}
			var flat []float32 // the flat imatrix, one weight per column
			if quantize.NeedsWeights(ti.Type) {
				flat = make([]float32, ti.Shape[0])
				for i := range flat {
					flat[i] = 1
				}
			}
			want, err := encode(nil, ti.Type, vals, flat)
			if err != nil {
				t.Fatalf("%s: %s: %v", typ, ti.Name, err)
			}
			got, err := io.ReadAll(f.TensorReader(ti))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s: tensor %s does not hold the encoding of its values", typ, ti.Name)
			}
		}
		f.Close()
	}
}

func decodeAll(t *testing.T, f *gguf.File, ti gguf.TensorInfo) []float32 {
	t.Helper()
	raw, err := io.ReadAll(f.TensorReader(ti))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, ti.Elements())
	if ti.Type == gguf.TypeF32 {
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		return out
	}
	if err := quantize.Decode(ti.Type, out, raw); err != nil {
		t.Fatalf("%s: %v", ti.Name, err)
	}
	return out
}

func equalShape(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestValuesStatistics(t *testing.T) {
	c := DefaultConfig()
	for _, dist := range Distributions {
		c.Dist = dist
		v, err := Values(c, "blk.0.ffn_up.weight")
		if err != nil {
			t.Fatal(err)
		}
		var s, s2 float64
		for _, x := range v {
			s += float64(x)
			s2 += float64(x) * float64(x)
		}
		n := float64(len(v))
		mean, std := s/n, math.Sqrt(s2/n-(s/n)*(s/n))
		want := 1 / math.Sqrt(float64(c.Embd))
		if math.Abs(mean) > 0.01*want || math.Abs(std/want-1) > 0.05 {
			t.Errorf("%s: mean %g std %g, want ~0 and ~%g", dist, mean, std, want)
		}
	}
	norm, err := Values(c, "blk.1.attn_norm.weight")
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range norm {
		if x < 0.7 || x > 1.3 {
			t.Fatalf("norm weight %d = %g, want near 1", i, x)
		}
	}
	if _, err := Values(c, "blk.9.attn_q.weight"); err == nil {
		t.Error("Values of a missing tensor: no error")
	}
}

func TestVocabulary(t *testing.T) {
	for _, n := range []int{MinVocab, 300, 512, 5000} {
		toks, scores, types := vocabulary(n)
		if len(toks) != n || len(scores) != n || len(types) != n {
			t.Fatalf("n=%d: got %d tokens, %d scores, %d types", n, len(toks), len(scores), len(types))
		}
		if toks[0] != "<unk>" || toks[1] != "<s>" || toks[2] != "</s>" || types[0] != tokenUnknown || types[1] != tokenControl || types[2] != tokenControl {
			t.Fatalf("n=%d: special tokens %q %v", n, toks[:3], types[:3])
		}
		index := make(map[string]int, n)
		for i, tok := range toks {
			if j, dup := index[tok]; dup {
				t.Fatalf("n=%d: token %q at %d and %d", n, tok, j, i)
			}
			index[tok] = i
		}
		for b := 0; b < 256; b++ {
			i := 3 + b
			if toks[i] != "<0x"+hex2(b)+">" || types[i] != tokenByte {
				t.Fatalf("n=%d: byte token %d is %q type %d", n, b, toks[i], types[i])
			}
		}
		// Every normal piece of two or more characters splits into two
		// pieces of the vocabulary, so SPM's pairwise merges can reach it.
		for i := MinVocab; i < n; i++ {
			tok := toks[i]
			if types[i] != tokenNormal || !utf8.ValidString(tok) {
				t.Fatalf("n=%d: piece %d %q type %d", n, i, tok, types[i])
			}
			if utf8.RuneCountInString(tok) < 2 {
				continue
			}
			ok := false
			for k := range tok {
				if k > 0 && index[tok[:k]] >= MinVocab && index[tok[k:]] >= MinVocab {
					ok = true
					break
				}
			}
			if !ok {
				t.Errorf("n=%d: piece %q cannot be formed by merging two pieces", n, tok)
			}
		}
	}
}

func hex2(b int) string {
	const digits = "0123456789ABCDEF"
	return string([]byte{digits[b>>4], digits[b&15]})
}

func TestValidate(t *testing.T) {
	bad := map[string]func(*Config){
		"no layers":       func(c *Config) { c.Layers = 0 },
		"odd head size":   func(c *Config) { c.Embd, c.Heads = 96, 32 },
		"heads not embd":  func(c *Config) { c.Heads = 3 },
		"kv not dividing": func(c *Config) { c.KVHeads = 3 },
		"kv > heads":      func(c *Config) { c.KVHeads = 8 },
		"tiny vocab":      func(c *Config) { c.Vocab = 100 },
		"dist":            func(c *Config) { c.Dist = "cauchy" },
		"used > experts":  func(c *Config) { c.Experts, c.ExpertsUsed = 2, 3 },
		"used w/o MoE":    func(c *Config) { c.ExpertsUsed = 1 },
		"no used":         func(c *Config) { c.Experts = 4 },
		"Q8_K":            func(c *Config) { c.Type = gguf.TypeQ8_K },
		"unknown type":    func(c *Config) { c.Type = gguf.Type(4) },
		"Q4_0 embd 48":    func(c *Config) { c.Type, c.Embd, c.Heads, c.KVHeads = gguf.TypeQ4_0, 48, 2, 2 },
		"Q6_K ff 320":     func(c *Config) { c.Type, c.FF = gguf.TypeQ6_K, 320 },
	}
	for name, mut := range bad {
		c := DefaultConfig()
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: %+v validated", name, c)
		} else if !strings.HasPrefix(err.Error(), "testmodels: ") {
			t.Errorf("%s: error %q lacks the package prefix", name, err)
		}
		if err := Write(filepath.Join(t.TempDir(), "x.gguf"), c, gguf.CreateOptions{}); err == nil {
			t.Errorf("%s: Write accepted it", name)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("DefaultConfig: %v", err)
	}
}

func TestWriteLeavesNothingOnError(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "m.gguf")
	if err := os.WriteFile(p, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, small(gguf.TypeF32), gguf.CreateOptions{}); err == nil {
		t.Fatal("Write over an existing file without Overwrite: no error")
	}
	if b := readFile(t, p); string(b) != "keep" {
		t.Fatal("existing file changed")
	}
	if err := Write(p, small(gguf.TypeF32), gguf.CreateOptions{Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("directory holds %d entries, want 1", len(ents))
	}
}

// TestSecondReader reads generated files with gguf-parser-go, an
// independent GGUF reader, and checks the layout and the hyperparameters.
func TestSecondReader(t *testing.T) {
	for _, c := range []Config{small(gguf.TypeF32), func() Config {
		c := small(gguf.TypeF32)
		c.Experts, c.ExpertsUsed, c.Layers = 4, 2, 3
		return c
	}()} {
		p := write(t, c)
		pf, err := parser.ParseGGUFFile(p)
		if err != nil {
			t.Fatal(err)
		}
		layout, err := Layout(c)
		if err != nil {
			t.Fatal(err)
		}
		if len(pf.TensorInfos) != len(layout) {
			t.Fatalf("parser sees %d tensors, want %d", len(pf.TensorInfos), len(layout))
		}
		for i, ti := range pf.TensorInfos {
			if ti.Name != layout[i].Name || !equalShape(ti.Dimensions, layout[i].Shape) || uint32(ti.Type) != uint32(layout[i].Type) {
				t.Errorf("tensor %d: parser sees %s %v type %d, want %s %v %s", i, ti.Name, ti.Dimensions, ti.Type, layout[i].Name, layout[i].Shape, layout[i].Type)
			}
		}
		a := pf.Architecture()
		if a.Architecture != "llama" || a.BlockCount != uint64(c.Layers) || a.EmbeddingLength != uint64(c.Embd) ||
			a.AttentionHeadCountKV != uint64(c.KVHeads) || a.ExpertCount != uint32(c.Experts) {
			t.Errorf("parser architecture %s blocks %d embd %d kv %d experts %d; want %s", a.Architecture, a.BlockCount, a.EmbeddingLength, a.AttentionHeadCountKV, a.ExpertCount, c)
		}
		tk := pf.Tokenizer()
		if tk.Model != "llama" || tk.TokensLength != uint64(c.Vocab) || tk.BOSTokenID != 1 || tk.EOSTokenID != 2 {
			t.Errorf("parser tokenizer %+v", tk)
		}
	}
}

// TestWeights: a tensor with Config.Weights holds ggml's weighted encoding
// of its values with them (and not the unweighted one); weights of the
// wrong length are refused, naming the tensor.
func TestWeights(t *testing.T) {
	for _, typ := range []gguf.Type{gguf.TypeIQ3_S, gguf.TypeIQ2_XXS} {
		c := small(typ)
		c.Layers, c.Embd, c.FF = 1, 256, 512
		const name = "blk.0.ffn_down.weight" // rows of FF values
		w := make([]float32, c.FF)
		for i := range w {
			w[i] = float32(1 + i%7*i%5)
		}
		c.Weights = map[string][]float32{name: w}
		f, err := gguf.Open(write(t, c))
		if err != nil {
			t.Fatal(err)
		}
		ti, ok := f.Tensor(name)
		if !ok {
			t.Fatalf("no tensor %s", name)
		}
		vals, err := Values(c, name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(f.TensorReader(ti))
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		want := make([]byte, len(got))
		if err := quantize.EncodeWeighted(typ, want, vals, w); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: %s does not hold the weighted encoding of its values", typ, name)
		}
		ones := make([]float32, c.FF)
		for i := range ones {
			ones[i] = 1
		}
		other := make([]byte, len(got))
		if err := quantize.EncodeWeighted(typ, other, vals, ones); err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(got, other) {
			t.Errorf("%s: the weights changed nothing", typ)
		}
		c.Weights = map[string][]float32{name: w[:100]}
		if err := Write(filepath.Join(t.TempDir(), "bad.gguf"), c, gguf.CreateOptions{}); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: 100 weights for rows of %d: %v, want an error naming %s", typ, c.FF, err, name)
		}
	}
}
