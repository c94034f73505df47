package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/audit"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/imatrix"
	"github.com/physarium/physarium-gguf/internal/filehash"
	lcpp "github.com/physarium/physarium-gguf/llamacpp"
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
	if a := mustRun(t, "dump", "--force", "--split", "--tensor", name, third); a != mustRun(t, "dump", "--force", "--tensor", name, whole) {
		t.Errorf("dump --split of the third shard differs from the whole file's")
	}
	if _, _, err := run(t, "audit", "--against", in, third); err == nil || !strings.Contains(err.Error(), "out-00001-of-00003.gguf") {
		t.Errorf("audit of the third shard: %v", err)
	}
	thirdIn := filepath.Join(dir, "in-00003-of-00003.gguf")
	if r, _, code := auditJSON(t, "--split", "--against", thirdIn, third); code != ExitOK || r.Verdict != "agree" {
		t.Errorf("audit --split of the third shards: exit %d, %v", code, r.Disagreements)
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

// splitWith splits model with llama.cpp's llama-gguf-split and args into
// shards named from prefix, and returns their paths in order.
func splitWith(t *testing.T, rtDir, model, prefix string, args ...string) []string {
	t.Helper()
	if out, err := exec.Command(filepath.Join(rtDir, "bin", "llama-gguf-split"), append(args, model, prefix)...).CombinedOutput(); err != nil {
		t.Fatalf("llama-gguf-split: %v\n%s", err, out)
	}
	shards, _ := filepath.Glob(prefix + "-*-of-*.gguf")
	if len(shards) < 2 {
		t.Fatalf("llama-gguf-split wrote %v", shards)
	}
	return shards
}

// evalJSON runs eval with args and returns its JSON report.
func evalJSON(t *testing.T, args ...string) EvalReport {
	t.Helper()
	out, stderr, err := run(t, append([]string{"eval", "--text", evalText, "--ctx", "64", "--chunks", "4", "--threads", "1", "--quiet", "--json", "-"}, args...)...)
	if err != nil {
		t.Fatalf("eval %v: %v\n%s", args, err, stderr)
	}
	var r EvalReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestSplitEvalCalibrate: eval and calibrate given a shard of stories260K
// split by llama-gguf-split run the whole model (the same figures as the
// file of one piece), name every shard's sha256, refuse a later shard
// without --split and a missing or extra shard by its name.
func TestSplitEvalCalibrate(t *testing.T) {
	rtDir := llamacpp.Require(t)
	needStories(t)
	t.Setenv(lcpp.LibEnv, llamacpp.LibDir(rtDir))
	dir := t.TempDir()
	shards := splitWith(t, rtDir, stories, filepath.Join(dir, "s"), "--split-max-tensors", "20")
	first, last := shards[0], shards[len(shards)-1]
	var names, sums []string
	for _, s := range shards {
		names, sums = append(names, filepath.Base(s)), append(sums, fileSum(t, s))
	}
	joined := strings.Join(sums, ", ")
	pruned := filepath.Join(dir, "pruned.gguf")
	mustRun(t, "prune", "--quiet", "--threads", "1", first, pruned)
	prunedFirst := gguf.SplitPath(filepath.Join(dir, "pruned"), 0, len(shards))

	// The split model against the whole file: the same logits.
	r := evalJSON(t, "--base", first, stories, prunedFirst)
	whole, pr := r.Models[0], r.Models[1]
	if r.Base.SHA256 != joined || len(r.Base.Shards) != len(shards) || r.Base.Shards[len(shards)-1].File != names[len(shards)-1] || r.Base.Shards[0].SHA256 != sums[0] {
		t.Fatalf("base %+v, want the shards %v %v", r.Base, names, sums)
	}
	if whole.KLD.MeanKLD != 0 || whole.KLD.SameTop != 1 || whole.PPL != r.Base.PPL || len(whole.Shards) != 0 {
		t.Errorf("the split model against the whole file: base PPL %v, whole %+v", r.Base.PPL, whole)
	}
	// The pruned model names the split input as its source: no warning.
	if len(r.Warnings) != 0 || len(pr.Shards) != len(shards) || pr.KLD.MeanKLD <= 0 {
		t.Errorf("pruned split output: warnings %v, %+v", r.Warnings, pr)
	}
	// Any shard with --split.
	if r2 := evalJSON(t, "--split", last); r2.Models[0].PPL != r.Base.PPL || r2.Models[0].SHA256 != joined {
		t.Errorf("eval --split %s: %+v, want PPL %v", last, r2.Models[0], r.Base.PPL)
	}
	refused := func(cmd string, want string, args ...string) {
		t.Helper()
		_, _, err := run(t, append([]string{cmd, "--text", evalText, "--ctx", "64", "--chunks", "4", "--threads", "1", "--quiet"}, args...)...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s %v: %v, want an error naming %s", cmd, args, err, want)
		}
	}
	refused("eval", names[0], last)
	// Missing and extra shards, in a directory of their own.
	bad := t.TempDir()
	for _, s := range shards[:len(shards)-1] {
		copyFile(t, s, filepath.Join(bad, filepath.Base(s)))
	}
	missing := filepath.Join(bad, names[len(names)-1])
	refused("eval", missing+", is missing", filepath.Join(bad, names[0]))
	refused("calibrate", missing+", is missing", filepath.Join(bad, names[0]), filepath.Join(bad, "cal.gguf"))
	copyFile(t, last, missing)
	extra := filepath.Join(bad, "s-00001-of-00009.gguf")
	copyFile(t, first, extra)
	refused("eval", extra, filepath.Join(bad, names[0]))
	refused("calibrate", extra, filepath.Join(bad, names[0]), filepath.Join(bad, "cal.gguf"))

	// calibrate of the split model (by its last shard) writes the figures
	// of the whole file and names every shard.
	calibrate := func(model, out string, extra ...string) {
		t.Helper()
		args := append([]string{"calibrate", "--text", "../../shared/models/tinystories_valid_calib.txt", "--ctx", "64", "--chunks", "4", "--threads", "1", "--quiet"}, extra...)
		if _, stderr, err := run(t, append(args, model, out)...); err != nil {
			t.Fatalf("%v\n%s", err, stderr)
		}
	}
	calSplit, calWhole := filepath.Join(dir, "cal-split.gguf"), filepath.Join(dir, "cal-whole.gguf")
	calibrate(last, calSplit, "--split")
	calibrate(stories, calWhole)
	cs, err := imatrix.LoadCalibration(calSplit)
	if err != nil {
		t.Fatal(err)
	}
	if cs.Info.ModelSHA256 != joined || cs.Info.Model != strings.Join(names, ", ") {
		t.Errorf("calibrate.model %q, calibrate.model_sha256 %q; want %v %v", cs.Info.Model, cs.Info.ModelSHA256, names, sums)
	}
	fs, fw := openFile(t, calSplit), openFile(t, calWhole)
	if len(fs.Tensors) != len(fw.Tensors) || len(fs.Tensors) == 0 {
		t.Fatalf("%d tensors from the split model, %d from the whole", len(fs.Tensors), len(fw.Tensors))
	}
	for i, ti := range fs.Tensors {
		a, err1 := io.ReadAll(fs.TensorReader(ti))
		b, err2 := io.ReadAll(fw.TensorReader(fw.Tensors[i]))
		if err1 != nil || err2 != nil || ti.Name != fw.Tensors[i].Name || !bytes.Equal(a, b) {
			t.Fatalf("calibration tensor %s differs between the split and the whole model (%v, %v)", ti.Name, err1, err2)
		}
	}
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	sum, err := filehash.SHA256(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err == nil {
		err = os.WriteFile(to, b, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func openFile(t *testing.T, path string) *gguf.File {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestSplitControlTwin: prune --control with a split output writes the
// control twin split the same way, naming every output shard's sha256 in
// physarium.control_of, with the tensors of the control twin written as
// one file; audit agrees with it against the split original and the split
// pruned twin, and refuses another pruned file as its twin.
func TestSplitControlTwin(t *testing.T) {
	rtDir := llamacpp.Require(t)
	dir := t.TempDir()
	orig := filepath.Join(dir, "model.gguf")
	mustRun(t, "testmodel", "--layers", "1", "--type", "q8_0", orig)
	shards := splitWith(t, rtDir, orig, filepath.Join(dir, "in"), "--split-max-tensors", "4")
	in := shards[0]
	out, ctl := filepath.Join(dir, "out.gguf"), filepath.Join(dir, "ctl.gguf")
	// A control shard's temporary file left by a killed run is removed.
	stale := filepath.Join(dir, "ctl-00003-of-00003.gguf.partial-4194303")
	if err := os.WriteFile(stale, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := mustRun(t, "prune", "--threads", "1", "--control", ctl, in, out)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale control shard temporary file: %v", err)
	}
	outFirst, ctlFirst := filepath.Join(dir, "out-00001-of-00003.gguf"), filepath.Join(dir, "ctl-00001-of-00003.gguf")
	if !strings.Contains(sum, "wrote control twin "+ctlFirst) || !strings.Contains(sum, "the first of 3 shards (ctl-00001-of-00003.gguf ... ctl-00003-of-00003.gguf)") {
		t.Errorf("summary:\n%s", sum)
	}
	mo, mc := openSplit(t, outFirst), openSplit(t, ctlFirst)
	if len(mc.Shards) != 3 || !slices.Equal(mc.ShardOf, mo.ShardOf) {
		t.Fatalf("control twin: %d shards %v, output %v", len(mc.Shards), mc.ShardOf, mo.ShardOf)
	}
	var parts []string
	for _, s := range mo.Shards {
		parts = append(parts, filepath.Base(s.Path)+" sha256:"+fileSum(t, s.Path))
	}
	if kv, _ := mc.View.KV("physarium.control_of"); kv.Value.Data != strings.Join(parts, ", ") {
		t.Errorf("physarium.control_of = %v, want %q", kv.Value.Data, strings.Join(parts, ", "))
	}
	for _, s := range mc.Shards[1:] {
		if len(s.KVs) != 3 {
			t.Errorf("%s: %d keys, want the 3 split keys", s.Path, len(s.KVs))
		}
	}
	// The same control twin as one file.
	one, oneCtl := filepath.Join(dir, "one.gguf"), filepath.Join(dir, "one-ctl.gguf")
	mustRun(t, "prune", "--quiet", "--threads", "1", "--no-split", "--control", oneCtl, in, one)
	m1 := openSplit(t, oneCtl)
	if len(m1.View.Tensors) != len(mc.View.Tensors) {
		t.Fatalf("%d tensors in the split control twin, %d in the single file", len(mc.View.Tensors), len(m1.View.Tensors))
	}
	for i, ti := range mc.View.Tensors {
		a, err1 := io.ReadAll(mc.View.TensorReader(ti))
		b, err2 := io.ReadAll(m1.View.TensorReader(m1.View.Tensors[i]))
		if err1 != nil || err2 != nil || ti.Name != m1.View.Tensors[i].Name || !bytes.Equal(a, b) {
			t.Fatalf("control tensor %s differs between the split and the single-file twin (%v, %v)", ti.Name, err1, err2)
		}
	}

	r, _, code := auditJSON(t, "--against", in, "--pruned", outFirst, ctlFirst)
	if code != ExitOK || r.Verdict != "agree" || !r.Control || r.PrunedTwinSHA256 != pick(parts) {
		t.Fatalf("audit of the split control twin: exit %d, verdict %q, control %v, twin sha256 %q, %v", code, r.Verdict, r.Control, r.PrunedTwinSHA256, r.Disagreements)
	}
	exact := false
	for _, c := range r.Checks {
		exact = exact || (c.Key == "physarium.control_of" && c.Status == audit.StatusExact)
	}
	if !exact {
		t.Errorf("physarium.control_of not checked exact against the split pruned twin")
	}
	if r, _, code := auditJSON(t, ctlFirst); code != ExitOK || r.Verdict != "agree" {
		t.Errorf("audit of the split control twin alone: exit %d, %v", code, r.Disagreements)
	}
	// Another pruned file (the same tensors, other files) is not its twin.
	r, _, code = auditJSON(t, "--pruned", one, ctlFirst)
	if code != ExitFailure || len(r.Disagreements) == 0 || r.Disagreements[0].Key != "physarium.control_of" {
		t.Errorf("audit against another pruned file: exit %d, %v", code, r.Disagreements)
	}
}

// pick returns the sha256s of "name sha256:hex" parts joined by ", ".
func pick(parts []string) string {
	var sums []string
	for _, p := range parts {
		_, sum, _ := strings.Cut(p, " sha256:")
		sums = append(sums, sum)
	}
	return strings.Join(sums, ", ")
}

func openSplit(t *testing.T, path string) *gguf.Model {
	t.Helper()
	m, err := gguf.OpenModel(path, gguf.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}
