package cli

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/testmodels/llamacpp"
)

// TestSplitModelCommands: prune, audit, inspect and dump take a model split
// by llama.cpp's llama-gguf-split as the whole model.
func TestSplitModelCommands(t *testing.T) {
	rt := llamacpp.Require(t)
	dir := t.TempDir()
	orig := filepath.Join(dir, "model.gguf")
	mustRun(t, "testmodel", "--layers", "1", orig)
	if out, err := exec.Command(filepath.Join(rt, "bin", "llama-gguf-split"), "--split-max-tensors", "4", orig, filepath.Join(dir, "in")).CombinedOutput(); err != nil {
		t.Fatalf("llama-gguf-split: %v\n%s", err, out)
	}
	// 12 tensors (3 + 9 of the block), 4 a shard.
	in := filepath.Join(dir, "in-00001-of-00003.gguf")
	out := filepath.Join(dir, "out.gguf")
	whole := filepath.Join(dir, "whole.gguf")
	// A shard's temporary file left by a killed run is removed.
	stale := filepath.Join(dir, "out-00002-of-00003.gguf.partial-4194303")
	if err := os.WriteFile(stale, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := run(t, "prune", "--quiet", "--threads", "1", in, out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) || !strings.Contains(stderr, "removed "+stale) {
		t.Errorf("stale shard temporary file: %v, stderr %q", err, stderr)
	}
	mustRun(t, "prune", "--quiet", "--threads", "1", orig, whole)
	first := filepath.Join(dir, "out-00001-of-00003.gguf")

	r, _, code := auditJSON(t, "--against", in, first)
	if code != ExitOK || r.Verdict != "agree" {
		t.Fatalf("audit of the split output against the split input: exit %d, verdict %q, %v", code, r.Verdict, r.Disagreements)
	}
	// Against the whole original the model is the same, the files are not:
	// only physarium.source disagrees.
	r, _, _ = auditJSON(t, "--against", orig, first)
	for _, d := range r.Disagreements {
		if d.Key != "physarium.source" {
			t.Errorf("split output against the whole original: %s disagrees: %s vs %s", d.Key, d.Stored, d.Recounted)
		}
	}
	if len(r.Disagreements) != 1 {
		t.Errorf("want physarium.source alone to disagree, got %d disagreements", len(r.Disagreements))
	}

	var ij, wj struct {
		Shards  []struct{ Path string }
		Tensors []struct {
			Name  string
			Shard int
		}
	}
	json.Unmarshal([]byte(mustRun(t, "inspect", "--json", first)), &ij)
	json.Unmarshal([]byte(mustRun(t, "inspect", "--json", whole)), &wj)
	if len(ij.Shards) != 3 || len(ij.Tensors) != 12 || len(wj.Tensors) != 12 || len(wj.Shards) != 0 {
		t.Fatalf("inspect --json: %d shards, %d tensors (whole: %d shards, %d tensors)", len(ij.Shards), len(ij.Tensors), len(wj.Shards), len(wj.Tensors))
	}
	if last := ij.Tensors[11]; last.Shard != 3 || last.Name != wj.Tensors[11].Name {
		t.Fatalf("last tensor %+v, whole file's %s", last, wj.Tensors[11].Name)
	}
	if text := mustRun(t, "inspect", first); !strings.Contains(text, "shards:      3") {
		t.Errorf("inspect text does not list the shards:\n%s", text)
	}

	// dump of a tensor of the last shard equals the whole file's.
	name := wj.Tensors[11].Name
	if a, b := mustRun(t, "dump", "--force", "--tensor", name, first), mustRun(t, "dump", "--force", "--tensor", name, whole); a != b || len(a) == 0 {
		t.Fatalf("dump of %s: %d bytes from the split output, %d from the whole", name, len(a), len(b))
	}

	// A later shard is refused without --split, read whole with it.
	third := filepath.Join(dir, "out-00003-of-00003.gguf")
	if _, _, err := run(t, "inspect", third); err == nil || !strings.Contains(err.Error(), "out-00001-of-00003.gguf") {
		t.Errorf("inspect of the third shard: %v", err)
	}
	json.Unmarshal([]byte(mustRun(t, "inspect", "--json", "--split", third)), &ij)
	if len(ij.Tensors) != 12 {
		t.Errorf("inspect --split of the third shard: %d tensors", len(ij.Tensors))
	}

	// prune --no-split writes one file with no split keys.
	one := filepath.Join(dir, "one.gguf")
	if sum := mustRun(t, "prune", "--threads", "1", "--no-split", in, one); !strings.Contains(sum, "wrote "+one) || strings.Contains(sum, "shards") {
		t.Errorf("--no-split summary:\n%s", sum)
	}
	if sum := mustRun(t, "prune", "--threads", "1", "--force", in, out); !strings.Contains(sum, "the first of 3 shards (out-00001-of-00003.gguf ... out-00003-of-00003.gguf)") {
		t.Errorf("split summary:\n%s", sum)
	}
	f, err := gguf.Open(one)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, ok := f.KV(gguf.SplitCountKey); ok || len(f.Tensors) != 12 {
		t.Errorf("--no-split: %d tensors, split.count present %v", len(f.Tensors), ok)
	}
}

func TestPruneSplitUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--no-split", "--split-max-tensors", "3"},
		{"--split-max-tensors", "0"},
		{"--split-max-size", "10K"},
		{"--split-max-size", "0M"},
		{"--split-max-size", "-1G"},
	} {
		_, _, err := run(t, append(append([]string{"prune"}, args...), "in.gguf", "out.gguf")...)
		if ExitCode(err) != ExitUsage {
			t.Errorf("prune %v: exit %d (%v), want a usage error", args, ExitCode(err), err)
		}
	}
}
