// Package testmodels generates small GGUF models with random weights, for
// tests and the demo: llama (the default), phi3 (fused QKV and a fused
// gate/up FFN) and deepseek2 (MLA attention, routed and shared experts). The
// files load and run in llama.cpp: they carry their architecture's
// hyperparameter keys and a small
// SentencePiece ("llama") vocabulary with byte fallback, so any text can be
// tokenized.
//
// Determinism: the values of each tensor come from a PCG generator seeded
// with Config.Seed and a hash of the tensor name, drawn in element order,
// independently of the tensor type. The same Config therefore always gives
// the same bytes, and a model of any type encodes (through quantize.Encode,
// or quantize.EncodeWeighted with Config.Weights) exactly the float values
// of its F32 twin.
//
// Type rule: every 1-D tensor (the norm weights) and the MoE router
// (ffn_gate_inp) are F32; every other tensor (embeddings, output, attention
// and feed-forward projections, expert tensors) is Config.Type. Those
// matrices all have ne[0] equal to Embd or FF (deepseek2's split attn_k_b:
// half a head), so a block type needs Embd and FF (and that half head)
// divisible by its block size (256 for the K-quants); otherwise Validate
// reports it. There is no silent fallback to F32 or F16.
package testmodels

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/quantize"
)

// Config describes a generated model.
type Config struct {
	Layers  int       // transformer blocks
	Embd    int       // embedding length (n_embd)
	FF      int       // feed-forward length (n_ff)
	Heads   int       // attention heads; Embd/Heads is the head size, which must be even
	KVHeads int       // key/value heads (GQA when < Heads); must divide Heads
	Vocab   int       // vocabulary size, at least MinVocab
	Type    gguf.Type // type of the matrices (see the package doc for the rule)
	Dist    string    // value distribution: "normal", "laplace" or "t3"
	Seed    uint64    // generator seed

	// Experts > 0 makes a mixture-of-experts model (Mixtral layout for
	// llama) with ExpertsUsed experts per token; both zero for a dense model.
	Experts, ExpertsUsed int

	// Weights holds importance weights (an imatrix row: one per column,
	// ne[0] of them) by tensor name, for the types with a weighted encoder
	// (quantize.CanEncodeWeighted): a tensor with an entry is encoded as
	// ggml_quantize_chunk does with that imatrix, every row and matrix
	// weighted alike. A tensor without one is encoded without an imatrix,
	// or, for the types ggml encodes only with one (quantize.NeedsWeights),
	// with the flat imatrix (every weight 1).
	Weights map[string][]float32

	// Arch is the architecture: ArchLlama (also ""), ArchPhi3 or
	// ArchDeepSeek2 (see Architectures).
	Arch string
	// MLA (deepseek2 only) stores attn_kv_b split as current conversions
	// do: attn_k_b (Heads matrices of Embd rows of head/2) and attn_v_b
	// (Heads matrices of head rows of Embd), with the KV cache holding
	// the compressed kv (head_count_kv 1, key_length_mla, value_length_mla).
	MLA bool
}

// The architectures Write can generate.
const (
	ArchLlama = "llama"
	// ArchPhi3 has one fused attn_qkv and a fused gate/up ffn_up (2*FF
	// rows); it is dense (no experts).
	ArchPhi3 = "phi3"
	// ArchDeepSeek2 has MLA attention (attn_q_a, attn_q_b, attn_kv_a_mqa,
	// attn_kv_b: q and kv low ranks Embd, head size Embd/Heads of which half
	// is rotary) and, after one dense leading block, routed experts with one
	// shared expert of FF rows; it needs Experts and KVHeads == Heads.
	ArchDeepSeek2 = "deepseek2"
)

// Architectures lists the accepted values of Config.Arch.
var Architectures = []string{ArchLlama, ArchPhi3, ArchDeepSeek2}

// arch returns the architecture, "" read as llama.
func (c Config) arch() string {
	if c.Arch == "" {
		return ArchLlama
	}
	return c.Arch
}

// Distributions lists the accepted values of Config.Dist.
var Distributions = []string{"normal", "laplace", "t3"}

// ContextLength is the llama.context_length written into every model.
const ContextLength = 2048

// DefaultConfig returns a small dense F32 model (2 layers, n_embd 256, n_ff
// 512, 4 heads, 512 tokens) whose dimensions suit every block type.
func DefaultConfig() Config {
	return Config{
		Layers:  2,
		Embd:    256,
		FF:      512,
		Heads:   4,
		KVHeads: 4,
		Vocab:   512,
		Type:    gguf.TypeF32,
		Dist:    "normal",
		Seed:    1,
	}
}

// Limits on the configuration, to keep a typo from filling a disk.
const (
	maxLayers  = 256
	maxDim     = 1 << 16
	maxVocab   = 1 << 20
	maxExperts = 256
)

// Validate reports the first problem with c, or nil.
func (c Config) Validate() error {
	pos := func(name string, v, max int) error {
		if v < 1 || v > max {
			return fmt.Errorf("testmodels: %s must be in 1..%d, got %d", name, max, v)
		}
		return nil
	}
	for _, e := range []error{
		pos("layers", c.Layers, maxLayers),
		pos("embd", c.Embd, maxDim),
		pos("ff", c.FF, maxDim),
		pos("heads", c.Heads, maxDim),
		pos("kv-heads", c.KVHeads, maxDim),
	} {
		if e != nil {
			return e
		}
	}
	if c.Vocab < MinVocab || c.Vocab > maxVocab {
		return fmt.Errorf("testmodels: vocab must be in %d..%d (3 special + 256 byte tokens at least), got %d", MinVocab, maxVocab, c.Vocab)
	}
	if c.Embd%c.Heads != 0 || (c.Embd/c.Heads)%2 != 0 {
		return fmt.Errorf("testmodels: embd %d must be heads %d times an even head size", c.Embd, c.Heads)
	}
	if c.KVHeads > c.Heads || c.Heads%c.KVHeads != 0 {
		return fmt.Errorf("testmodels: kv-heads %d must divide heads %d", c.KVHeads, c.Heads)
	}
	if !validDist(c.Dist) {
		return fmt.Errorf("testmodels: unknown distribution %q (want one of %s)", c.Dist, strings.Join(Distributions, ", "))
	}
	if c.Experts < 0 || c.Experts > maxExperts {
		return fmt.Errorf("testmodels: experts must be in 0..%d, got %d", maxExperts, c.Experts)
	}
	if c.Experts == 0 && c.ExpertsUsed != 0 {
		return fmt.Errorf("testmodels: experts-used %d without experts", c.ExpertsUsed)
	}
	if c.Experts > 0 && (c.ExpertsUsed < 1 || c.ExpertsUsed > c.Experts) {
		return fmt.Errorf("testmodels: experts-used must be in 1..%d, got %d", c.Experts, c.ExpertsUsed)
	}
	if err := c.checkArch(); err != nil {
		return err
	}
	return checkType(c)
}

// SupportedType reports whether Write can store matrices of type t: F32,
// or any type quantize can encode except the intermediate Q8_1 and Q8_K,
// which llama.cpp cannot use as weights.
func SupportedType(t gguf.Type) bool {
	if t == gguf.TypeF32 {
		return true
	}
	if t == gguf.TypeQ8_1 || t == gguf.TypeQ8_K {
		return false
	}
	return quantize.CanEncode(t)
}

// checkArch checks what each architecture needs of the other fields.
func (c Config) checkArch() error {
	if c.MLA && c.arch() != ArchDeepSeek2 {
		return fmt.Errorf("testmodels: mla needs arch %s", ArchDeepSeek2)
	}
	switch c.arch() {
	case ArchLlama:
	case ArchPhi3:
		if c.Experts > 0 {
			return fmt.Errorf("testmodels: arch %s is dense: experts must be 0, got %d", ArchPhi3, c.Experts)
		}
	case ArchDeepSeek2:
		if c.Experts == 0 {
			return fmt.Errorf("testmodels: arch %s needs experts (and experts-used)", ArchDeepSeek2)
		}
		if c.KVHeads != c.Heads {
			return fmt.Errorf("testmodels: arch %s needs kv-heads equal to heads (%d), got %d", ArchDeepSeek2, c.Heads, c.KVHeads)
		}
		if (c.Embd/c.Heads)%4 != 0 {
			return fmt.Errorf("testmodels: arch %s needs a head size (embd/heads = %d) divisible by 4", ArchDeepSeek2, c.Embd/c.Heads)
		}
		if ti, ok := c.Type.Info(); ok && c.MLA && (c.Embd/c.Heads/2)%ti.BlockSize != 0 {
			return fmt.Errorf("testmodels: mla: type %s packs %d values per block: attn_k_b rows of head/2 = %d values do not fit", c.Type, ti.BlockSize, c.Embd/c.Heads/2)
		}
	default:
		return fmt.Errorf("testmodels: unknown arch %q (want one of %s)", c.Arch, strings.Join(Architectures, ", "))
	}
	return nil
}

func checkType(c Config) error {
	if !SupportedType(c.Type) {
		return fmt.Errorf("testmodels: type %s cannot be written (no encoder, or not a weight type)", c.Type)
	}
	ti, _ := c.Type.Info()
	bs := ti.BlockSize
	if c.Embd%bs != 0 || c.FF%bs != 0 {
		return fmt.Errorf("testmodels: type %s packs %d values per block: embd (%d) and ff (%d) must be multiples of %d", c.Type, bs, c.Embd, c.FF, bs)
	}
	return nil
}

func validDist(d string) bool {
	for _, x := range Distributions {
		if d == x {
			return true
		}
	}
	return false
}

// kind says how a tensor's values are drawn.
type kind int

const (
	kindMatrix kind = iota // dist * 1/sqrt(ne[0])
	kindNorm               // 1 + 0.05*N(0,1)
)

type spec struct {
	info gguf.TensorInfo
	kind kind
}

func (c Config) specs() []spec {
	e, ff := uint64(c.Embd), uint64(c.FF)
	head := e / uint64(c.Heads)
	kv := head * uint64(c.KVHeads)
	var s []spec
	add := func(name string, t gguf.Type, k kind, shape ...uint64) {
		s = append(s, spec{gguf.TensorInfo{Name: name, Type: t, Shape: shape}, k})
	}
	v := uint64(c.Vocab)
	add("token_embd.weight", c.Type, kindMatrix, e, v)
	add("output_norm.weight", gguf.TypeF32, kindNorm, e)
	add("output.weight", c.Type, kindMatrix, e, v)
	switch c.arch() {
	case ArchPhi3:
		for i := 0; i < c.Layers; i++ {
			p := fmt.Sprintf("blk.%d.", i)
			add(p+"attn_norm.weight", gguf.TypeF32, kindNorm, e)
			add(p+"attn_qkv.weight", c.Type, kindMatrix, e, e+2*kv)
			add(p+"attn_output.weight", c.Type, kindMatrix, e, e)
			add(p+"ffn_norm.weight", gguf.TypeF32, kindNorm, e)
			add(p+"ffn_up.weight", c.Type, kindMatrix, e, 2*ff)
			add(p+"ffn_down.weight", c.Type, kindMatrix, ff, e)
		}
		return s
	case ArchDeepSeek2:
		// q and kv low ranks are Embd; heads are head wide, the last
		// head/2 of q and k rotary.
		nh, rope := uint64(c.Heads), head/2
		for i := 0; i < c.Layers; i++ {
			p := fmt.Sprintf("blk.%d.", i)
			add(p+"attn_norm.weight", gguf.TypeF32, kindNorm, e)
			add(p+"attn_q_a_norm.weight", gguf.TypeF32, kindNorm, e)
			add(p+"attn_kv_a_norm.weight", gguf.TypeF32, kindNorm, e)
			add(p+"attn_q_a.weight", c.Type, kindMatrix, e, e)
			add(p+"attn_q_b.weight", c.Type, kindMatrix, e, nh*head)
			add(p+"attn_kv_a_mqa.weight", c.Type, kindMatrix, e, e+rope)
			if c.MLA {
				add(p+"attn_k_b.weight", c.Type, kindMatrix, head-rope, e, nh)
				add(p+"attn_v_b.weight", c.Type, kindMatrix, e, head, nh)
			} else {
				add(p+"attn_kv_b.weight", c.Type, kindMatrix, e, nh*(head-rope+head))
			}
			add(p+"attn_output.weight", c.Type, kindMatrix, nh*head, e)
			add(p+"ffn_norm.weight", gguf.TypeF32, kindNorm, e)
			if i < deepseekDenseLead {
				add(p+"ffn_gate.weight", c.Type, kindMatrix, e, ff)
				add(p+"ffn_up.weight", c.Type, kindMatrix, e, ff)
				add(p+"ffn_down.weight", c.Type, kindMatrix, ff, e)
				continue
			}
			x := uint64(c.Experts)
			add(p+"ffn_gate_inp.weight", gguf.TypeF32, kindMatrix, e, x)
			add(p+"ffn_gate_exps.weight", c.Type, kindMatrix, e, ff, x)
			add(p+"ffn_up_exps.weight", c.Type, kindMatrix, e, ff, x)
			add(p+"ffn_down_exps.weight", c.Type, kindMatrix, ff, e, x)
			add(p+"ffn_gate_shexp.weight", c.Type, kindMatrix, e, ff)
			add(p+"ffn_up_shexp.weight", c.Type, kindMatrix, e, ff)
			add(p+"ffn_down_shexp.weight", c.Type, kindMatrix, ff, e)
		}
		return s
	}
	for i := 0; i < c.Layers; i++ {
		p := fmt.Sprintf("blk.%d.", i)
		add(p+"attn_norm.weight", gguf.TypeF32, kindNorm, e)
		add(p+"attn_q.weight", c.Type, kindMatrix, e, e)
		add(p+"attn_k.weight", c.Type, kindMatrix, e, kv)
		add(p+"attn_v.weight", c.Type, kindMatrix, e, kv)
		add(p+"attn_output.weight", c.Type, kindMatrix, e, e)
		add(p+"ffn_norm.weight", gguf.TypeF32, kindNorm, e)
		if c.Experts > 0 {
			x := uint64(c.Experts)
			add(p+"ffn_gate_inp.weight", gguf.TypeF32, kindMatrix, e, x)
			add(p+"ffn_gate_exps.weight", c.Type, kindMatrix, e, ff, x)
			add(p+"ffn_up_exps.weight", c.Type, kindMatrix, e, ff, x)
			add(p+"ffn_down_exps.weight", c.Type, kindMatrix, ff, e, x)
		} else {
			add(p+"ffn_gate.weight", c.Type, kindMatrix, e, ff)
			add(p+"ffn_up.weight", c.Type, kindMatrix, e, ff)
			add(p+"ffn_down.weight", c.Type, kindMatrix, ff, e)
		}
	}
	return s
}

// deepseekDenseLead is the number of leading dense blocks of a deepseek2
// model (deepseek2.leading_dense_block_count).
const deepseekDenseLead = 1

// Layout returns the tensor infos of the model c describes, in file order
// (Offset left zero: the writer computes it).
func Layout(c Config) ([]gguf.TensorInfo, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	specs := c.specs()
	out := make([]gguf.TensorInfo, len(specs))
	for i, s := range specs {
		out[i] = s.info
	}
	return out, nil
}

// fileTypes maps a uniform matrix type to llama.cpp's general.file_type
// (LLAMA_FTYPE_*); types whose ftypes are mixes (Q3_K_S/M, ...) have none.
var fileTypes = map[gguf.Type]uint32{
	gguf.TypeF32:    0,
	gguf.TypeF16:    1,
	gguf.TypeQ4_0:   2,
	gguf.TypeQ4_1:   3,
	gguf.TypeQ8_0:   7,
	gguf.TypeQ5_0:   8,
	gguf.TypeQ5_1:   9,
	gguf.TypeQ2_K:   10,
	gguf.TypeQ6_K:   18,
	gguf.TypeIQ4_NL: 25,
	gguf.TypeIQ4_XS: 30,
	gguf.TypeBF16:   32,
	gguf.TypeTQ1_0:  36,
	gguf.TypeTQ2_0:  37,
}

// Header returns the GGUF header (keys and tensor infos) of the model c
// describes.
func Header(c Config) (gguf.Header, error) {
	infos, err := Layout(c)
	if err != nil {
		return gguf.Header{}, err
	}
	head := uint32(c.Embd / c.Heads)
	a := c.arch()
	kvs := []gguf.KV{
		{Key: "general.architecture", Value: gguf.String(a)},
		{Key: "general.name", Value: gguf.String("physarium-testmodel")},
		{Key: "general.description", Value: gguf.String(c.String() + " (random weights, not trained)")},
	}
	if ft, ok := fileTypes[c.Type]; ok {
		kvs = append(kvs, gguf.KV{Key: "general.file_type", Value: gguf.Uint32(ft)})
	}
	rope, kvHeads := head, uint32(c.KVHeads)
	if a == ArchDeepSeek2 {
		rope = head / 2
	}
	if c.MLA {
		kvHeads = 1 // one compressed kv shared by every head
	}
	kvs = append(kvs,
		gguf.KV{Key: a + ".vocab_size", Value: gguf.Uint32(uint32(c.Vocab))},
		gguf.KV{Key: a + ".context_length", Value: gguf.Uint32(ContextLength)},
		gguf.KV{Key: a + ".embedding_length", Value: gguf.Uint32(uint32(c.Embd))},
		gguf.KV{Key: a + ".feed_forward_length", Value: gguf.Uint32(uint32(c.FF))},
		gguf.KV{Key: a + ".block_count", Value: gguf.Uint32(uint32(c.Layers))},
		gguf.KV{Key: a + ".attention.head_count", Value: gguf.Uint32(uint32(c.Heads))},
		gguf.KV{Key: a + ".attention.head_count_kv", Value: gguf.Uint32(kvHeads)},
		gguf.KV{Key: a + ".rope.dimension_count", Value: gguf.Uint32(rope)},
		gguf.KV{Key: a + ".rope.freq_base", Value: gguf.Float32(10000)},
		gguf.KV{Key: a + ".attention.layer_norm_rms_epsilon", Value: gguf.Float32(1e-5)},
	)
	if c.Experts > 0 {
		kvs = append(kvs,
			gguf.KV{Key: a + ".expert_count", Value: gguf.Uint32(uint32(c.Experts))},
			gguf.KV{Key: a + ".expert_used_count", Value: gguf.Uint32(uint32(c.ExpertsUsed))},
		)
	}
	if a == ArchDeepSeek2 {
		keyLen, valLen := head, head
		if c.MLA {
			// the cache holds the compressed kv and the rotary part
			keyLen, valLen = uint32(c.Embd)+rope, uint32(c.Embd)
			kvs = append(kvs,
				gguf.KV{Key: a + ".attention.key_length_mla", Value: gguf.Uint32(head)},
				gguf.KV{Key: a + ".attention.value_length_mla", Value: gguf.Uint32(head)},
			)
		}
		kvs = append(kvs,
			gguf.KV{Key: a + ".attention.key_length", Value: gguf.Uint32(keyLen)},
			gguf.KV{Key: a + ".attention.value_length", Value: gguf.Uint32(valLen)},
			gguf.KV{Key: a + ".attention.q_lora_rank", Value: gguf.Uint32(uint32(c.Embd))},
			gguf.KV{Key: a + ".attention.kv_lora_rank", Value: gguf.Uint32(uint32(c.Embd))},
			gguf.KV{Key: a + ".leading_dense_block_count", Value: gguf.Uint32(deepseekDenseLead)},
			gguf.KV{Key: a + ".expert_feed_forward_length", Value: gguf.Uint32(uint32(c.FF))},
			gguf.KV{Key: a + ".expert_shared_count", Value: gguf.Uint32(1)},
			gguf.KV{Key: a + ".expert_weights_scale", Value: gguf.Float32(1)},
		)
	}
	tokens, scores, types := vocabulary(c.Vocab)
	kvs = append(kvs,
		gguf.KV{Key: "tokenizer.ggml.model", Value: gguf.String("llama")},
		gguf.KV{Key: "tokenizer.ggml.tokens", Value: gguf.Strings(tokens)},
		gguf.KV{Key: "tokenizer.ggml.scores", Value: gguf.Float32s(scores)},
		gguf.KV{Key: "tokenizer.ggml.token_type", Value: gguf.Int32s(types)},
		gguf.KV{Key: "tokenizer.ggml.unknown_token_id", Value: gguf.Uint32(0)},
		gguf.KV{Key: "tokenizer.ggml.bos_token_id", Value: gguf.Uint32(1)},
		gguf.KV{Key: "tokenizer.ggml.eos_token_id", Value: gguf.Uint32(2)},
		gguf.KV{Key: "tokenizer.ggml.add_bos_token", Value: gguf.Bool(true)},
		gguf.KV{Key: "tokenizer.ggml.add_eos_token", Value: gguf.Bool(false)},
	)
	return gguf.Header{Version: 3, KVs: kvs, Tensors: infos}, nil
}

// String describes c in the flag syntax of the testmodel command.
func (c Config) String() string {
	s := fmt.Sprintf("layers=%d embd=%d ff=%d heads=%d kv-heads=%d vocab=%d type=%s dist=%s seed=%d",
		c.Layers, c.Embd, c.FF, c.Heads, c.KVHeads, c.Vocab, c.Type, c.Dist, c.Seed)
	if c.Experts > 0 {
		s += fmt.Sprintf(" experts=%d experts-used=%d", c.Experts, c.ExpertsUsed)
	}
	if c.arch() != ArchLlama {
		s += " arch=" + c.arch()
	}
	if c.MLA {
		s += " mla"
	}
	return s
}

// generator draws the values of one tensor in element order.
type generator struct {
	rng   *rand.Rand
	kind  kind
	dist  string
	scale float64
}

func newGenerator(c Config, s spec) *generator {
	h := fnv.New64a()
	h.Write([]byte(s.info.Name))
	return &generator{
		rng:   rand.New(rand.NewPCG(c.Seed, h.Sum64())),
		kind:  s.kind,
		dist:  c.Dist,
		scale: 1 / math.Sqrt(float64(s.info.Shape[0])),
	}
}

// unit draws one value of the distribution scaled to unit variance.
func (g *generator) unit() float64 {
	switch g.dist {
	case "laplace": // Laplace(b = 1/sqrt 2) has variance 2b^2 = 1
		x := g.rng.ExpFloat64() / math.Sqrt2
		if g.rng.Uint64()&1 == 1 {
			x = -x
		}
		return x
	case "t3": // Student's t with 3 degrees of freedom has variance 3
		z := g.rng.NormFloat64()
		var v float64
		for range 3 {
			n := g.rng.NormFloat64()
			v += n * n
		}
		return z / math.Sqrt(v/3) / math.Sqrt(3)
	default:
		return g.rng.NormFloat64()
	}
}

func (g *generator) fill(dst []float32) {
	for i := range dst {
		if g.kind == kindNorm {
			dst[i] = float32(1 + 0.05*g.rng.NormFloat64())
		} else {
			dst[i] = float32(g.unit() * g.scale)
		}
	}
}

// Values returns the float values of the named tensor of the model c
// describes: what its F32 twin stores, and what the other types encode.
func Values(c Config, name string) ([]float32, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	for _, s := range c.specs() {
		if s.info.Name == name {
			out := make([]float32, s.info.Elements())
			newGenerator(c, s).fill(out)
			return out, nil
		}
	}
	return nil, fmt.Errorf("testmodels: no tensor %q in this model", name)
}

// Write generates the model c describes into path through gguf.Create.
func Write(path string, c Config, opts gguf.CreateOptions) error {
	return WriteContext(context.Background(), path, c, opts)
}

// chunkValues is how many values Write generates and encodes at a time.
const chunkValues = 1 << 16

// WriteContext is Write that stops (leaving no file) when ctx is done.
func WriteContext(ctx context.Context, path string, c Config, opts gguf.CreateOptions) (err error) {
	h, err := Header(c)
	if err != nil {
		return err
	}
	w, err := gguf.Create(path, h, opts)
	if err != nil {
		return fmt.Errorf("testmodels: %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			w.Abort()
		}
	}()
	vals := make([]float32, chunkValues)
	var buf []byte
	for _, s := range c.specs() {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("testmodels: %s: %w", path, err)
		}
		g := newGenerator(c, s)
		ti, _ := s.info.Type.Info()
		step := chunkValues / ti.BlockSize * ti.BlockSize
		weights, werr := c.weightsOf(s.info)
		if werr != nil {
			return fmt.Errorf("testmodels: %s: tensor %s: %w", path, s.info.Name, werr)
		}
		if len(weights) > 0 {
			// Whole rows of the imatrix's length at a time.
			step = max(1, chunkValues/len(weights)) * len(weights)
		}
		for left := s.info.Elements(); left > 0; {
			n := uint64(step)
			if left < n {
				n = left
			}
			v := vals[:n]
			g.fill(v)
			buf, err = encode(buf, s.info.Type, v, weights)
			if err != nil {
				return fmt.Errorf("testmodels: %s: tensor %s: %w", path, s.info.Name, err)
			}
			if _, err := w.Write(buf); err != nil {
				return fmt.Errorf("testmodels: %s: tensor %s: %w", path, s.info.Name, err)
			}
			left -= n
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("testmodels: %s: %w", path, err)
	}
	return nil
}

// weightsOf returns the importance weights tensor ti is encoded with (nil
// for none): its Weights entry, or the flat imatrix of one block for a type
// that ggml encodes only with an imatrix.
func (c Config) weightsOf(ti gguf.TensorInfo) ([]float32, error) {
	if w, ok := c.Weights[ti.Name]; ok && quantize.CanEncodeWeighted(ti.Type) {
		if len(ti.Shape) == 0 || uint64(len(w)) != ti.Shape[0] {
			return nil, fmt.Errorf("%d importance weights for rows of %d values", len(w), ti.Shape[0])
		}
		return w, nil
	}
	if quantize.NeedsWeights(ti.Type) {
		info, _ := ti.Type.Info()
		flat := make([]float32, info.BlockSize)
		for i := range flat {
			flat[i] = 1
		}
		return flat, nil
	}
	return nil, nil
}

// encode stores v (whole blocks; whole rows of weights when not nil) as
// type t into buf, reusing its memory.
func encode(buf []byte, t gguf.Type, v, weights []float32) ([]byte, error) {
	n, ok := t.RowBytes(uint64(len(v)))
	if !ok {
		return buf, errors.New("values are not whole blocks of " + t.String())
	}
	if uint64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if t == gguf.TypeF32 {
		for i, x := range v {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(x))
		}
		return buf, nil
	}
	return buf, quantize.EncodeWeighted(t, buf, v, weights)
}
