//go:build cgo

package llamacpp_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/llamacpp"
	"github.com/physarium/physarium-gguf/testmodels"
	rt "github.com/physarium/physarium-gguf/testmodels/llamacpp"
)

const (
	stories  = "../../shared/models/stories260K.gguf"
	evalText = "../../shared/models/tinystories_valid_eval.txt"
)

// load loads the runtime's libraries (rt.Load).
func load(t testing.TB) *llamacpp.Library { return rt.Load(t) }

func timeout(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func readText(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// agree evaluates model with Evaluate and with llama.cpp's llama-perplexity
// on the same text, ctx, batch (2048), thread count (1) and chunks, and
// requires the same PPL to 4 decimals and the same "+/-" to 5, the digits
// llama-perplexity prints.
func agree(t *testing.T, lib *llamacpp.Library, model string, ctxN, chunks int) float64 {
	t.Helper()
	res, err := llamacpp.Evaluate(timeout(t), lib, llamacpp.Options{Models: []string{model}, Text: readText(t, evalText),
		TextName: evalText, CtxSize: ctxN, Chunks: chunks, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	ref, _, err := rt.Referee(timeout(t), model, evalText, ctxN, 1, chunks)
	if err != nil {
		t.Fatal(err)
	}
	got := res.Models[0]
	t.Logf("%s ctx %d, %d chunks, %d tokens scored: eval PPL = %.4f +/- %.5f; llama-perplexity PPL = %.4f +/- %.5f",
		filepath.Base(model), ctxN, res.Chunks, res.Scored, got.PPL, got.PPLErr, ref.PPL, ref.StdErr)
	if fmt.Sprintf("%.4f %.5f", got.PPL, got.PPLErr) != fmt.Sprintf("%.4f %.5f", ref.PPL, ref.StdErr) {
		t.Errorf("eval PPL %.4f +/- %.5f, llama-perplexity %.4f +/- %.5f", got.PPL, got.PPLErr, ref.PPL, ref.StdErr)
	}
	return got.PPL
}

// TestPerplexityMatchesLlamaPerplexity: stories260K on the held-out text
// at ctx 128 (the whole text) and ctx 64, and a generated Q4_K model.
func TestPerplexityMatchesLlamaPerplexity(t *testing.T) {
	lib := load(t)
	t.Run("stories260K-ctx128", func(t *testing.T) {
		if ppl := agree(t, lib, stories, 128, 0); fmt.Sprintf("%.4f", ppl) != "6.1660" {
			t.Errorf("stories260K at ctx 128: PPL %.4f, want 6.1660 (llama-perplexity's figure)", ppl)
		}
	})
	t.Run("stories260K-ctx64", func(t *testing.T) { agree(t, lib, stories, 64, 400) })
	t.Run("generated-q4_k", func(t *testing.T) {
		c := testmodels.DefaultConfig()
		c.Type = gguf.TypeQ4_K
		p := filepath.Join(t.TempDir(), "q4_k.gguf")
		if err := testmodels.Write(p, c, gguf.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		agree(t, lib, p, 128, 16)
	})
}

// TestSplitBatch: a batch smaller than the chunk (each chunk decoded in
// several batches, its logits gathered) gives the figure of the whole-chunk
// batch.
func TestSplitBatch(t *testing.T) {
	lib := load(t)
	run := func(batch int) float64 {
		// The CLI's progress bar is this callback: what it stored must be
		// readable once Evaluate returns (the race detector checks that).
		var seen []llamacpp.Progress
		res, err := llamacpp.Evaluate(timeout(t), lib, llamacpp.Options{Models: []string{stories}, Text: readText(t, evalText),
			TextName: evalText, CtxSize: 128, Batch: batch, Chunks: 20, Threads: 1,
			Progress: func(p llamacpp.Progress) { seen = append(seen, p) }})
		if err != nil {
			t.Fatal(err)
		}
		if len(seen) == 0 || seen[len(seen)-1].Done != seen[len(seen)-1].Total {
			t.Errorf("batch %d: progress calls %+v: want at least one, the last with Done == Total", batch, seen)
		}
		return res.Models[0].PPL
	}
	whole, split := run(2048), run(48)
	if fmt.Sprintf("%.4f", whole) != fmt.Sprintf("%.4f", split) {
		t.Errorf("PPL with batch 48 = %.6f, with batch 2048 = %.6f", split, whole)
	}
}

// TestKLDSelfIsZero: a model against itself diverges by exactly 0 and
// agrees on the top token everywhere; its PPL ratio is 1.
func TestKLDSelfIsZero(t *testing.T) {
	lib := load(t)
	res, err := llamacpp.Evaluate(timeout(t), lib, llamacpp.Options{Models: []string{stories}, Base: stories,
		Text: readText(t, evalText), TextName: evalText, CtxSize: 128, Chunks: 64, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	d := res.Models[0].KLD
	if d == nil {
		t.Fatal("no KLD with a base model")
	}
	if d.MeanKLD != 0 || d.MaxKLD != 0 || d.SameTop != 1 || d.PPLRatio != 1 || d.RMSDeltaP != 0 || d.Tokens != res.Scored {
		t.Errorf("self divergence %+v", *d)
	}
	if res.Base.PPL != res.Models[0].PPL {
		t.Errorf("base PPL %v, model PPL %v", res.Base.PPL, res.Models[0].PPL)
	}
}

// TestSaveBaseLogitsFeedsLlamaPerplexity: the file --save-base-logits
// writes is read by llama-perplexity --kl-divergence, which then reports the
// same PPL for the model (it re-evaluates the tokens stored in the file).
func TestSaveBaseLogitsFeedsLlamaPerplexity(t *testing.T) {
	lib := load(t)
	logits := filepath.Join(t.TempDir(), "base.logits")
	f, err := os.Create(logits)
	if err != nil {
		t.Fatal(err)
	}
	res, err := llamacpp.Evaluate(timeout(t), lib, llamacpp.Options{Models: []string{stories}, Base: stories,
		Text: readText(t, evalText), TextName: evalText, CtxSize: 128, Chunks: 32, Threads: 1, SaveBaseLogits: f})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	outs, err := rt.RunTool(timeout(t), rt.RefereeTool, "-m", stories, "--kl-divergence-base", logits,
		"--kl-divergence", "-c", "128", "-t", "1")
	if err != nil {
		t.Fatal(err)
	}
	out := []byte(outs)
	var ppl, unc float64
	if m := regexp.MustCompile(`Mean PPL\(Q\)\s*:\s*([0-9.]+)\s*±\s*([0-9.]+)`).FindSubmatch(out); m != nil {
		ppl, _ = strconv.ParseFloat(string(m[1]), 64)
		unc, _ = strconv.ParseFloat(string(m[2]), 64)
	}
	t.Logf("llama-perplexity --kl-divergence on our base file: Mean PPL(Q) %.6f ± %.6f; eval %.6f ± %.6f", ppl, unc, res.Models[0].PPL, res.Models[0].PPLErr)
	if fmt.Sprintf("%.4f", ppl) != fmt.Sprintf("%.4f", res.Models[0].PPL) {
		t.Errorf("llama-perplexity read PPL %.6f from our file, eval says %.6f", ppl, res.Models[0].PPL)
	}
}

// TestRefusals: each unusable input is refused with an error that names it.
func TestRefusals(t *testing.T) {
	lib := load(t)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	text := readText(t, evalText)
	other := filepath.Join(dir, "vocab600.gguf")
	c := testmodels.DefaultConfig()
	c.Vocab = 600
	if err := testmodels.Write(other, c, gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		o      llamacpp.Options
		want   string
		target error
	}{
		{"not a gguf", llamacpp.Options{Models: []string{write("junk.gguf", []byte("this is not a model"))}, Text: text}, "invalid magic", nil},
		{"missing", llamacpp.Options{Models: []string{filepath.Join(dir, "none.gguf")}, Text: text}, "none.gguf", os.ErrNotExist},
		{"empty text", llamacpp.Options{Models: []string{stories}, Text: []byte(" \n")}, "is empty", llamacpp.ErrText},
		{"binary text", llamacpp.Options{Models: []string{stories}, Text: []byte("abc\x00def")}, "binary", llamacpp.ErrText},
		{"short text", llamacpp.Options{Models: []string{stories}, Text: []byte("Once upon a time.")}, "tokenizes to only", llamacpp.ErrText},
		{"vocab", llamacpp.Options{Models: []string{stories, other}, Text: text}, "refusing to compare", llamacpp.ErrVocabMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.TextName, tc.o.CtxSize, tc.o.Threads, tc.o.Chunks = "the-text", 128, 1, 2
			_, err := llamacpp.Evaluate(timeout(t), lib, tc.o)
			if err == nil {
				t.Fatal("accepted")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
			if tc.target != nil && !errors.Is(err, tc.target) {
				t.Errorf("error %q does not wrap %v", err, tc.target)
			}
		})
	}
}

// TestTensorCallback: the graph evaluation callback sees named tensors of
// the forward pass and reads their data.
func TestTensorCallback(t *testing.T) {
	lib := load(t)
	m, err := lib.LoadModel(stories)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	seen := map[string][4]int64{}
	var read int
	c, err := m.NewContext(llamacpp.ContextParams{NCtx: 64, NBatch: 64, NSeq: 1, Threads: 1, OnTensor: func(tn llamacpp.Tensor, ask bool) bool {
		if ask {
			return strings.HasPrefix(tn.Name(), "ffn_out")
		}
		seen[tn.Name()] = tn.Shape()
		buf := make([]byte, tn.Bytes())
		if err := tn.Read(buf); err == nil && tn.Type() == "f32" {
			read += len(buf)
		}
		return true
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	toks, err := m.Tokenize([]byte("Once upon a time there was a little dog."), true, false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := llamacpp.NewBatch(64)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Add(toks, 0, 0, len(toks)-1); err != nil {
		t.Fatal(err)
	}
	if err := c.Decode(b); err != nil {
		t.Fatal(err)
	}
	if len(seen) == 0 || read == 0 {
		t.Fatalf("callback saw %v, read %d bytes", seen, read)
	}
	// Every block's output has one column per token, except the last
	// block's, which llama.cpp computes for the outputs only.
	for name, ne := range seen {
		if ne[0] != 64 || (ne[1] != int64(len(toks)) && !(name == "ffn_out-4" && ne[1] == 1)) {
			t.Errorf("%s has shape %v, want [64 %d 1 1]", name, ne, len(toks))
		}
	}
	t.Logf("callback saw %d ffn_out tensors, %d bytes", len(seen), read)
}
