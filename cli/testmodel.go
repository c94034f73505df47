package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/imatrix"
	"github.com/physarium/physarium-gguf/quantize"
	"github.com/physarium/physarium-gguf/testmodels"
)

// supportedTypeNames lists the --type values testmodel accepts right now.
func supportedTypeNames() []string {
	var names []string
	for _, t := range gguf.Types() {
		if testmodels.SupportedType(t) {
			names = append(names, strings.ToLower(t.String()))
		}
	}
	return names
}

func (a *App) testmodelCommand() *ucli.Command {
	d := testmodels.DefaultConfig()
	return &ucli.Command{
		Name:      "testmodel",
		Usage:     "write a small random GGUF (llama, phi3 or deepseek2) that llama.cpp loads and runs",
		ArgsUsage: "OUT",
		Description: `Writes a model with random weights (not trained) and a small
SentencePiece vocabulary with byte fallback, so llama.cpp can tokenize any
text with it. The same flags always give the same bytes, and a model of any
--type stores (after encoding) exactly the values of its F32 twin.

Architectures (--arch):
  llama      (default) attn_q/k/v/output, ffn_gate/up/down, or Mixtral
             experts with --experts
  phi3       fused attn_qkv and a fused gate/up ffn_up (2 x --ff rows); dense
  deepseek2  MLA attention (attn_q_a, attn_q_b, attn_kv_a_mqa, attn_kv_b; low
             ranks --embd, half of each head rotary), block 0 dense, the
             others routed experts plus one shared expert; needs --experts
             and --kv-heads equal to --heads; --mla splits attn_kv_b into
             attn_k_b and attn_v_b (3-D, one matrix per head) as current
             conversions do, the cache holding the compressed kv

Norm weights and the MoE router are F32; embeddings, output and every
projection are --type. Block types need --embd and --ff divisible by the
block size (32 for Q4_0/Q8_0..., 256 for the K-quants and i-quants).

The i-quant grid types (iq2_xxs, iq2_xs, iq2_s, iq3_xxs, iq3_s, iq1_s,
iq1_m) are encoded as ggml_quantize_chunk does: with --imatrix FILE (a
llama-imatrix file, GGUF or .dat, made for instance on this model's F32
twin), each tensor it names is weighted by its mean squared activations,
as llama-quantize does; the other tensors are encoded without an imatrix,
or, for iq2_xxs, iq2_xs and iq1_s, which ggml encodes only with one, with
the flat imatrix (every column weighted 1).

OUT is handled as prune handles it: absent, or with --force a regular
file (a symbolic link is written through; directories, devices, FIFOs,
sockets and dangling links are refused), written to OUT.partial-PID and
renamed into place, nothing left behind on an error or a signal.

Examples:
  physarium-gguf testmodel model.gguf
  physarium-gguf testmodel --type f16 --kv-heads 2 --dist t3 --seed 7 gqa.gguf
  physarium-gguf testmodel --experts 4 --experts-used 2 moe.gguf
  physarium-gguf testmodel --type iq2_xxs --embd 1024 --ff 2048 --imatrix m.gguf iq2.gguf
  physarium-gguf testmodel --arch phi3 phi3.gguf
  physarium-gguf testmodel --arch deepseek2 --experts 4 --experts-used 2 ds2.gguf
  physarium-gguf testmodel --arch deepseek2 --mla --experts 4 --experts-used 2 mla.gguf`,
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "arch", Value: testmodels.ArchLlama, Usage: "architecture: " + strings.Join(testmodels.Architectures, ", ")},
			&ucli.BoolFlag{Name: "mla", Usage: "deepseek2 only: attn_k_b and attn_v_b instead of attn_kv_b"},
			&ucli.IntFlag{Name: "layers", Value: d.Layers, Usage: "transformer blocks"},
			&ucli.IntFlag{Name: "embd", Value: d.Embd, Usage: "embedding length"},
			&ucli.IntFlag{Name: "ff", Value: d.FF, Usage: "feed-forward length"},
			&ucli.IntFlag{Name: "heads", Value: d.Heads, Usage: "attention heads"},
			&ucli.IntFlag{Name: "kv-heads", Usage: "key/value heads, fewer than --heads for GQA (default: --heads)"},
			&ucli.IntFlag{Name: "vocab", Value: d.Vocab, Usage: fmt.Sprintf("vocabulary size (at least %d)", testmodels.MinVocab)},
			&ucli.StringFlag{Name: "type", Value: strings.ToLower(d.Type.String()), Usage: "type of the matrices, one of: " + strings.Join(supportedTypeNames(), ", ")},
			&ucli.StringFlag{Name: "dist", Value: d.Dist, Usage: "weight distribution: " + strings.Join(testmodels.Distributions, ", ")},
			&ucli.Uint64Flag{Name: "seed", Value: d.Seed, Usage: "random seed"},
			&ucli.IntFlag{Name: "experts", Usage: "experts per MoE layer (0: dense)"},
			&ucli.IntFlag{Name: "experts-used", Usage: "experts used per token (MoE only)"},
			&ucli.StringFlag{Name: "imatrix", Usage: "importance matrix `FILE` for the i-quant types (llama-imatrix GGUF or .dat)"},
			&ucli.BoolFlag{Name: "force", Usage: "overwrite OUT if it is a regular file (or a link to one)"},
		},
		Action: a.testmodel,
	}
}

func (a *App) testmodel(c *ucli.Context) error {
	pos, err := args(c, "OUT")
	if err != nil {
		return err
	}
	out := pos[0]
	t, ok := gguf.ParseType(c.String("type"))
	if !ok {
		return usageErrorf("testmodel: --type %q: unknown type; want one of %s", c.String("type"), strings.Join(supportedTypeNames(), ", "))
	}
	if !testmodels.SupportedType(t) {
		return usageErrorf("testmodel: --type %q: %s cannot be encoded as model weights; want one of %s", c.String("type"), t, strings.Join(supportedTypeNames(), ", "))
	}
	kvHeads := c.Int("kv-heads")
	if kvHeads == 0 {
		kvHeads = c.Int("heads")
	}
	cfg := testmodels.Config{
		Layers:      c.Int("layers"),
		Embd:        c.Int("embd"),
		FF:          c.Int("ff"),
		Heads:       c.Int("heads"),
		KVHeads:     kvHeads,
		Vocab:       c.Int("vocab"),
		Type:        t,
		Dist:        c.String("dist"),
		Seed:        c.Uint64("seed"),
		Experts:     c.Int("experts"),
		ExpertsUsed: c.Int("experts-used"),
		Arch:        c.String("arch"),
		MLA:         c.Bool("mla"),
	}
	if err := cfg.Validate(); err != nil {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("testmodel: %w", err)}
	}
	if path := c.String("imatrix"); path != "" {
		if !quantize.CanEncodeWeighted(t) {
			return usageErrorf("testmodel: --imatrix: type %s takes no importance matrix here (only the i-quant grid types do)", t)
		}
		if cfg.Weights, err = imatrixWeights(path); err != nil {
			return fmt.Errorf("testmodel: --imatrix: %w", err)
		}
	}
	force := c.Bool("force")
	if err := gguf.CheckTarget(out, true); err != nil {
		return fmt.Errorf("testmodel: %w", err)
	}
	if !force {
		if _, err := os.Stat(out); err == nil {
			return fmt.Errorf("testmodel: %s exists (use --force to overwrite)", out)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("testmodel: %w", err)
		}
	}
	if err := a.removeStale("testmodel", out); err != nil {
		return err
	}
	if err := testmodels.WriteContext(c.Context, out, cfg, gguf.CreateOptions{Overwrite: force}); err != nil {
		return fmt.Errorf("testmodel: %w", err)
	}
	st, err := os.Stat(out)
	if err != nil {
		return fmt.Errorf("testmodel: %w", err)
	}
	fmt.Fprintf(a.Stderr, "testmodel: wrote %s (%d bytes; %s)\n", out, st.Size(), cfg)
	return nil
}

// imatrixWeights reads an importance matrix into one weight per column for
// each dense tensor it names: the mean of the squared activations,
// sum/count, as llama-quantize computes it (a count of 0 read as 1).
// Entries of several matrices (MoE experts) are refused.
func imatrixWeights(path string) (map[string][]float32, error) {
	m, err := imatrix.Load(path)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]float32, len(m.Entries))
	for _, name := range m.Names() {
		e := m.Entries[name]
		if len(e.Counts) != 1 {
			return nil, fmt.Errorf("%s: entry %s holds %d counts: only dense tensors (one matrix) take importance weights here", path, name, len(e.Counts))
		}
		c := e.Counts[0]
		if c == 0 {
			c = 1
		}
		w := make([]float32, len(e.Sums))
		for i, s := range e.Sums {
			w[i] = float32(float64(s) / c)
		}
		out[name] = w
	}
	return out, nil
}
