package prune

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/testmodels"
)

// fuzzSeeds are small generated models the fuzzer mutates: F32, and two
// block types (one without and one with a zero-preserving re-encoder).
func fuzzSeeds(f *testing.F) [][]byte {
	dir := f.TempDir()
	var seeds [][]byte
	for i, typ := range []gguf.Type{gguf.TypeF32, gguf.TypeQ8_0, gguf.TypeQ4_1} {
		c := testmodels.DefaultConfig()
		c.Layers, c.Embd, c.FF, c.Heads, c.KVHeads, c.Vocab = 1, 64, 96, 2, 2, 260
		c.Type, c.Seed = typ, uint64(i+1)
		p := filepath.Join(dir, typ.String()+".gguf")
		if err := testmodels.Write(p, c, gguf.CreateOptions{}); err != nil {
			f.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	return seeds
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
		dir := t.TempDir()
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
