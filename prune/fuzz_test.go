package prune

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/testmodels"
)

// fuzzSeeds are small models the fuzzer mutates: F32, and two block types
// (one without and one with a zero-preserving re-encoder). Each is a
// one-layer testmodels llama (n_embd 32, n_ff 32) without what prune only
// copies through and that would make most of the file: the tokenizer
// arrays and the two vocabulary-sized matrices (token_embd, output). So a
// seed is a few kilobytes of header, norms and target projections, and a
// mutation mostly lands in bytes the pipeline parses, plans and prunes.
// Each seed must prune (something killed), so the fuzzer starts from
// inputs that reach the surgery, not only the parser.
func fuzzSeeds(f *testing.F) [][]byte {
	dir := f.TempDir()
	var seeds [][]byte
	for i, typ := range []gguf.Type{gguf.TypeF32, gguf.TypeQ8_0, gguf.TypeQ4_1} {
		c := testmodels.DefaultConfig()
		c.Layers, c.Embd, c.FF, c.Heads, c.KVHeads, c.Vocab = 1, 32, 32, 2, 2, testmodels.MinVocab
		c.Type, c.Seed = typ, uint64(i+1)
		full := filepath.Join(dir, typ.String()+".full.gguf")
		if err := testmodels.Write(full, c, gguf.CreateOptions{}); err != nil {
			f.Fatal(err)
		}
		p := filepath.Join(dir, typ.String()+".gguf")
		stripForFuzz(f, full, p)
		rep, err := File(context.Background(), p, filepath.Join(dir, typ.String()+".pruned.gguf"), Options{Threads: 1})
		if err != nil || rep.Killed == 0 {
			f.Fatalf("seed %s: killed %v, error %v; a seed must reach the surgery", typ, rep, err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	return seeds
}

// stripForFuzz copies the model at src to dst without the tokenizer
// arrays, token_embd.weight and output.weight.
func stripForFuzz(f *testing.F, src, dst string) {
	g, err := gguf.Open(src)
	if err != nil {
		f.Fatal(err)
	}
	defer g.Close()
	var h gguf.Header
	h.Version = g.Version
	for _, kv := range g.KVs {
		if !strings.HasPrefix(kv.Key, "tokenizer.ggml.") || kv.Key == "tokenizer.ggml.model" {
			h.KVs = append(h.KVs, kv)
		}
	}
	for _, ti := range g.Tensors {
		if ti.Name != "token_embd.weight" && ti.Name != "output.weight" {
			h.Tensors = append(h.Tensors, ti)
		}
	}
	w, err := gguf.Create(dst, h, gguf.CreateOptions{})
	if err != nil {
		f.Fatal(err)
	}
	for _, ti := range h.Tensors {
		if err := w.WriteTensor(g.TensorReader(ti)); err != nil {
			f.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
}

// fuzzTempDir is a fresh directory for one input, on /dev/shm when the
// machine has it: every successful prune ends in an fsync, which on a
// busy disk costs more than the pruning of a seed.
func fuzzTempDir(t *testing.T) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "physarium-fuzz-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}

// FuzzPrune runs the whole pipeline on mutated models: it must never
// panic or hang, never change its input, and either write an output that
// parses or fail and leave nothing behind.
func FuzzPrune(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
		f.Add(s[:len(s)/2])
		// A tensor's type byte or a count changed is a common corruption:
		// flip bytes in the header region as extra seeds.
		for _, at := range []int{8, 16, 24, 200, 400} {
			if at < len(s) {
				m := bytes.Clone(s)
				m[at] ^= 0x5a
				f.Add(m)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := fuzzTempDir(t)
		in := filepath.Join(dir, "in.gguf")
		out := filepath.Join(dir, "out.gguf")
		if err := os.WriteFile(in, data, 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := File(ctx, in, out, Options{Threads: 1})
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("prune did not finish within 20 s on a %d-byte input", len(data))
		}
		after, rerr := os.ReadFile(in)
		if rerr != nil || !bytes.Equal(after, data) {
			t.Fatalf("the input changed (read error %v)", rerr)
		}
		entries, _ := os.ReadDir(dir)
		if err != nil {
			if len(entries) != 1 {
				names := []string{}
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Fatalf("failed (%v) but left %v", err, names)
			}
			return
		}
		if len(entries) != 2 {
			t.Fatalf("succeeded with %d files in the directory", len(entries))
		}
		g, err := gguf.Open(out)
		if err != nil {
			t.Fatalf("the output does not parse: %v", err)
		}
		g.Close()
	})
}
