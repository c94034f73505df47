package llamacpp

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The shared fixtures live beside the repository, three levels up from here.
const (
	storiesModel = "../../../shared/models/stories260K.gguf"
	storiesText  = "../../../shared/models/tinystories_sample.txt"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestPerplexityStories260K checks the tool against llama.cpp's own figure
// for the real TinyStories model: 6.8464 at n_ctx 128 on the sample text.
// The last digits move by about 1e-3 with the CPU variant and attention
// kernel llama.cpp picks, hence the tolerance.
func TestPerplexityStories260K(t *testing.T) {
	Require(t)
	r, err := Perplexity(testContext(t), storiesModel, storiesText, 128)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stories260K on tinystories_sample.txt, n_ctx 128: PPL = %.4f +/- %.5f (%d chunks, %d tokens, %d scored)",
		r.PPL, r.StdErr, r.Chunks, r.Tokens, r.Scored)
	const want = 6.8464
	if math.Abs(r.PPL-want) > 0.01 {
		t.Errorf("PPL = %.4f, want %.4f +- 0.01", r.PPL, want)
	}
	// The tokenization and chunking are exact: 1882 tokens with BOS, 14 chunks
	// of 128, 63 scored tokens in each.
	if r.Tokens != 1882 || r.Chunks != 14 || r.Scored != 14*63 {
		t.Errorf("tokens, chunks, scored = %d, %d, %d, want 1882, 14, %d", r.Tokens, r.Chunks, r.Scored, 14*63)
	}
	if !(r.StdErr > 0 && r.StdErr < r.PPL) {
		t.Errorf("StdErr = %v, want in (0, PPL)", r.StdErr)
	}
}

func TestPerplexityMissingModel(t *testing.T) {
	Require(t)
	missing := filepath.Join(t.TempDir(), "no-such-model.gguf")
	_, err := Perplexity(testContext(t), missing, storiesText, 128)
	if err == nil {
		t.Fatal("no error for a missing model")
	}
	if !strings.Contains(err.Error(), missing) {
		t.Errorf("error %q does not name %s", err, missing)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %q does not wrap a not-exist error", err)
	}
}

func TestPerplexityGarbageModel(t *testing.T) {
	Require(t)
	garbage := filepath.Join(t.TempDir(), "garbage.gguf")
	b := make([]byte, 100)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(garbage, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Perplexity(testContext(t), garbage, storiesText, 128)
	if err == nil {
		t.Fatal("no error for a model of 100 random bytes")
	}
	t.Logf("garbage model: %v", err)
	if !strings.Contains(err.Error(), garbage) {
		t.Errorf("error %q does not name %s", err, garbage)
	}
}

// TestPerplexityShortText: a text too short for two chunks is refused with
// the reason, as llama-perplexity refuses it.
func TestPerplexityShortText(t *testing.T) {
	Require(t)
	short := filepath.Join(t.TempDir(), "short.txt")
	if err := os.WriteFile(short, []byte("Once upon a time there was a cat.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Perplexity(testContext(t), storiesModel, short, 128)
	if err == nil {
		t.Fatal("no error for a text shorter than two chunks")
	}
	if !strings.Contains(err.Error(), "tokenizes to only") {
		t.Errorf("error %q does not give the reason", err)
	}
}

func TestPerplexityCancel(t *testing.T) {
	Require(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Perplexity(ctx, storiesModel, storiesText, 128); err == nil {
		t.Fatal("no error with a cancelled context")
	}
}

func TestDirUnset(t *testing.T) {
	t.Setenv(EnvVar, "")
	if d, ok := Dir(); ok {
		t.Errorf("Dir() = %q, true with %s empty", d, EnvVar)
	}
	if _, err := Perplexity(context.Background(), storiesModel, storiesText, 128); err == nil ||
		!strings.Contains(err.Error(), EnvVar) {
		t.Errorf("Perplexity without %s: err = %v, want one naming the variable", EnvVar, err)
	}
}

func TestCheckIncomplete(t *testing.T) {
	dir := t.TempDir()
	if err := Check(dir); err == nil {
		t.Fatal("Check accepted an empty directory")
	}
	if err := os.MkdirAll(filepath.Join(dir, "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "lib", libllama), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Check(dir); err == nil || !strings.Contains(err.Error(), RefereeTool) {
		t.Fatalf("Check without bin/%s: err = %v", RefereeTool, err)
	}
}

// TestRefereeAgrees: the in-process Perplexity and llama.cpp's own
// llama-perplexity give the same figure to the 4 decimals it prints.
func TestRefereeAgrees(t *testing.T) {
	Require(t)
	ours, err := Perplexity(testContext(t), storiesModel, storiesText, 128)
	if err != nil {
		t.Fatal(err)
	}
	ref, _, err := Referee(testContext(t), storiesModel, storiesText, 128, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Perplexity %.4f +/- %.5f, llama-perplexity %.4f +/- %.5f", ours.PPL, ours.StdErr, ref.PPL, ref.StdErr)
	if fmt.Sprintf("%.4f", ours.PPL) != fmt.Sprintf("%.4f", ref.PPL) || fmt.Sprintf("%.5f", ours.StdErr) != fmt.Sprintf("%.5f", ref.StdErr) {
		t.Errorf("Perplexity %.4f +/- %.5f, llama-perplexity %.4f +/- %.5f", ours.PPL, ours.StdErr, ref.PPL, ref.StdErr)
	}
}

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{max: 5}
	for _, s := range []string{"ab", "cd", "efg", "0123456789", "x"} {
		if n, _ := b.Write([]byte(s)); n != len(s) {
			t.Fatalf("Write returned %d, want %d", n, len(s))
		}
	}
	if got := b.String(); got != "6789x" {
		t.Errorf("tail = %q, want %q", got, "6789x")
	}
}

// TestImatrixStories260K runs llama.cpp's llama-imatrix (built against the
// shipped libllama-common) and checks that it writes a GGUF imatrix holding
// the projections of every block.
func TestImatrixStories260K(t *testing.T) {
	Require(t)
	out := filepath.Join(t.TempDir(), "imatrix.gguf")
	if err := Imatrix(testContext(t), storiesModel, storiesText, 128, out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("GGUF")) {
		t.Fatalf("%s does not start with the GGUF magic", out)
	}
	for _, name := range []string{"imatrix", "blk.0.attn_q.weight.in_sum2", "blk.4.ffn_down.weight.counts"} {
		if !bytes.Contains(b, []byte(name)) {
			t.Errorf("%s lacks %q", out, name)
		}
	}
	t.Logf("imatrix: %d bytes", len(b))
}

func TestImatrixGarbageModel(t *testing.T) {
	Require(t)
	garbage := filepath.Join(t.TempDir(), "garbage.gguf")
	if err := os.WriteFile(garbage, []byte("not a gguf file at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Imatrix(testContext(t), garbage, storiesText, 128, filepath.Join(t.TempDir(), "out.gguf"))
	if err == nil {
		t.Fatal("no error for a garbage model")
	}
	if !strings.Contains(err.Error(), garbage) {
		t.Errorf("error %q does not name %s", err, garbage)
	}
}
