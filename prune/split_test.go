package prune

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/testmodels"
	"github.com/physarium/physarium-gguf/testmodels/llamacpp"
)

// ggufSplit runs llama.cpp's llama-gguf-split with args.
func ggufSplit(t *testing.T, args ...string) {
	t.Helper()
	dir := llamacpp.Require(t)
	out, err := exec.Command(filepath.Join(dir, "bin", "llama-gguf-split"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("llama-gguf-split %v: %v\n%s", args, err, out)
	}
}

// openModel opens the model at path (a file or a first shard).
func openModel(t *testing.T, path string) *gguf.Model {
	t.Helper()
	m, err := gguf.OpenModel(path, gguf.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// sameModel checks that the models at a and b hold the same tensors (name,
// type, shape, bytes, in order) and the same keys but the split keys and
// physarium.source.
func sameModel(t *testing.T, a, b string) {
	t.Helper()
	ma, mb := openModel(t, a), openModel(t, b)
	keys := func(m *gguf.Model) []gguf.KV {
		var kvs []gguf.KV
		for _, kv := range m.View.KVs {
			if !strings.HasPrefix(kv.Key, gguf.SplitPrefix) && kv.Key != errata.KeyPrefix+errata.KeySource {
				kvs = append(kvs, kv)
			}
		}
		return kvs
	}
	ka, kb := keys(ma), keys(mb)
	if len(ka) != len(kb) {
		t.Fatalf("%s: %d keys, %s: %d", a, len(ka), b, len(kb))
	}
	for i := range ka {
		if ka[i].Key != kb[i].Key || !reflect.DeepEqual(ka[i].Value, kb[i].Value) {
			t.Fatalf("key %d: %s = %v in %s, %s = %v in %s", i, ka[i].Key, ka[i].Value, a, kb[i].Key, kb[i].Value, b)
		}
	}
	ta, tb := ma.View.Tensors, mb.View.Tensors
	if len(ta) != len(tb) {
		t.Fatalf("%s: %d tensors, %s: %d", a, len(ta), b, len(tb))
	}
	for i := range ta {
		if ta[i].Name != tb[i].Name || ta[i].Type != tb[i].Type || !slices.Equal(ta[i].Shape, tb[i].Shape) {
			t.Fatalf("tensor %d: %s %s %v in %s, %s %s %v in %s", i, ta[i].Name, ta[i].Type, ta[i].Shape, a, tb[i].Name, tb[i].Type, tb[i].Shape, b)
		}
		x, err1 := io.ReadAll(ma.View.TensorReader(ta[i]))
		y, err2 := io.ReadAll(mb.View.TensorReader(tb[i]))
		if err1 != nil || err2 != nil || !bytes.Equal(x, y) {
			t.Fatalf("tensor %s: bytes differ between %s and %s (%v, %v)", ta[i].Name, a, b, err1, err2)
		}
	}
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestPruneSplitModel splits a generated model with llama.cpp's
// llama-gguf-split by tensors and by size, prunes the split and the whole
// file, and checks that the outputs hold the same model, split as the input
// was, that llama.cpp loads the split output with the perplexity of the
// whole one, and that llama-gguf-split --merge of the split output gives
// the whole one back.
func TestPruneSplitModel(t *testing.T) {
	llamacpp.Require(t)
	dir := t.TempDir()
	merged := filepath.Join(dir, "model.gguf")
	if err := testmodels.Write(merged, testmodels.DefaultConfig(), gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	whole := filepath.Join(dir, "whole-pruned.gguf")
	rw, err := File(ctx, merged, whole, Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	// The head of the held-out text: the same text for both is all that counts.
	full, err := os.ReadFile(filepath.Join(sharedModels, "tinystories_valid_eval.txt"))
	if err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(dir, "eval-head.txt")
	if err := os.WriteFile(text, full[:min(len(full), 32<<10)], 0o644); err != nil {
		t.Fatal(err)
	}
	ppl, err := llamacpp.Perplexity(ctx, whole, text, 128)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		args  []string
		split Split // the same split done by prune itself
	}{
		{"by-tensors", []string{"--split-max-tensors", "7"}, Split{MaxTensors: 7}},
		{"by-size", []string{"--split-max-size", "1M"}, Split{MaxBytes: 1000 * 1000}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := filepath.Join(dir, c.name)
			os.Mkdir(d, 0o755)
			ggufSplit(t, append(c.args, merged, filepath.Join(d, "in"))...)
			matches, _ := filepath.Glob(filepath.Join(d, "in-*-of-*.gguf"))
			if len(matches) < 2 {
				t.Fatalf("llama-gguf-split wrote %d shards: %v", len(matches), matches)
			}
			in := gguf.SplitPath(filepath.Join(d, "in"), 0, len(matches))
			mi := openModel(t, in)

			out := filepath.Join(d, "out.gguf")
			r, err := File(ctx, in, out, Options{Threads: 2})
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Outputs) != len(matches) || r.Output != gguf.SplitPath(filepath.Join(d, "out"), 0, len(matches)) {
				t.Fatalf("outputs %v (first %s), want %d shards", r.Outputs, r.Output, len(matches))
			}
			// The denominators are over the whole model.
			if r.Weights != rw.Weights || r.Killed != rw.Killed || r.TargetCount != rw.TargetCount {
				t.Fatalf("split: weights %+v killed %d targets %d; whole file: %+v %d %d", r.Weights, r.Killed, r.TargetCount, rw.Weights, rw.Killed, rw.TargetCount)
			}
			mo := openModel(t, r.Output)
			if !slices.Equal(mo.ShardOf, mi.ShardOf) {
				t.Fatalf("output shards %v, input shards %v", mo.ShardOf, mi.ShardOf)
			}
			sameModel(t, r.Output, whole)
			// physarium.source lists every input shard and its sha256; the
			// physarium keys are in the first shard alone.
			var names, sums []string
			for _, s := range mi.Shards {
				names, sums = append(names, filepath.Base(s.Path)), append(sums, sha256File(t, s.Path))
			}
			kv, _ := mo.View.KV(errata.KeyPrefix + errata.KeySource)
			if got, want := kv.Value.Data, errata.Source(names, sums); got != want {
				t.Fatalf("physarium.source = %q, want %q", got, want)
			}
			for _, s := range mo.Shards[1:] {
				for _, kv := range s.KVs {
					if !strings.HasPrefix(kv.Key, gguf.SplitPrefix) {
						t.Fatalf("%s: key %s beside the split keys", s.Path, kv.Key)
					}
				}
			}

			// prune's own split of the whole file lays it out as llama-gguf-split did.
			own := filepath.Join(d, "own.gguf")
			ro, err := File(ctx, merged, own, Options{Threads: 2, Split: c.split})
			if err != nil {
				t.Fatal(err)
			}
			if mw := openModel(t, ro.Output); !slices.Equal(mw.ShardOf, mi.ShardOf) {
				t.Fatalf("prune --split: shards %v, llama-gguf-split's %v", mw.ShardOf, mi.ShardOf)
			}
			sameModel(t, ro.Output, whole)

			// llama.cpp loads the split output, with the whole file's perplexity.
			sp, err := llamacpp.Perplexity(ctx, r.Output, text, 128)
			if err != nil {
				t.Fatal(err)
			}
			if sp.PPL != ppl.PPL || math.IsNaN(sp.PPL) || sp.Chunks != ppl.Chunks {
				t.Fatalf("perplexity: split output %.6f over %d chunks, whole %.6f over %d", sp.PPL, sp.Chunks, ppl.PPL, ppl.Chunks)
			}
			t.Logf("llama.cpp perplexity, n_ctx 128, %d chunks: split output (%d shards) %.4f, whole output %.4f", sp.Chunks, len(matches), sp.PPL, ppl.PPL)

			// llama-gguf-split --merge of the split output is the whole output.
			back := filepath.Join(d, "merged-back.gguf")
			ggufSplit(t, "--merge", r.Output, back)
			sameModel(t, back, whole)

			// --no-split: one file, without split keys.
			one := filepath.Join(d, "one.gguf")
			if _, err := File(ctx, in, one, Options{Threads: 2, Split: Split{None: true}}); err != nil {
				t.Fatal(err)
			}
			m1 := openModel(t, one)
			if _, ok := m1.View.KV(gguf.SplitCountKey); ok || m1.Split() {
				t.Fatalf("--no-split output %s has split keys", one)
			}
			sameModel(t, one, whole)
		})
	}
}

// TestPruneSplitLeavesNothing: a run stopped while writing a split output
// and its control twin leaves no shard and no temporary file, and the
// output names are checked.
func TestPruneSplitLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "model.gguf")
	if err := testmodels.Write(in, testmodels.DefaultConfig(), gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := filepath.Join(dir, "out.gguf")
	_, err := File(ctx, in, out, Options{Threads: 2, Split: Split{MaxTensors: 3}, Control: filepath.Join(dir, "ctl.gguf"), Progress: func(p Progress) {
		if p.TensorIndex >= 5 {
			cancel()
		}
	}})
	if err == nil {
		t.Fatal("a cancelled run succeeded")
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Fatalf("left behind: %v", names)
	}
	for _, c := range []struct {
		out   string
		split Split
		want  string
	}{
		{"out-00001-of-00002.gguf", Split{MaxTensors: 3}, "names shard 1 of 2, but the output has"},
		{"out-00002-of-00007.gguf", Split{MaxTensors: 3}, "names shard 2 of 7"},
		{"out.bin", Split{MaxTensors: 3}, "a path ending in .gguf"},
		{"out.gguf", Split{MaxTensors: 3, None: true}, "choose one of"},
	} {
		_, err := File(context.Background(), in, filepath.Join(dir, c.out), Options{Threads: 2, Split: c.split})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("output %s, %+v: %v, want %q", c.out, c.split, err, c.want)
		}
	}
	// Named as its first shard, the output lands there.
	first := filepath.Join(dir, "out-00001-of-00007.gguf") // 21 tensors, 3 a shard
	r, err := File(context.Background(), in, first, Options{Threads: 2, Split: Split{MaxTensors: 3}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Output != first || len(r.Outputs) != 7 {
		t.Fatalf("output %s, %d shards", r.Output, len(r.Outputs))
	}
	if names := dirNames(t, dir); len(names) != 8 {
		t.Fatalf("directory: %v", names)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}
