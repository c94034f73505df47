package audit_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/physarium/physarium-gguf/audit"
	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/method"
	"github.com/physarium/physarium-gguf/prune"
	"github.com/physarium/physarium-gguf/testmodels"
	"github.com/physarium/physarium-gguf/testmodels/llamacpp"
)

// prunedPair writes a one-block test model of type typ and its pruned twin;
// sparsity > 0 prunes in sparsity mode.
func prunedPair(t *testing.T, typ gguf.Type, sparsity float64) (orig, pruned string, r *prune.Report) {
	t.Helper()
	dir := t.TempDir()
	cfg := testmodels.DefaultConfig()
	cfg.Layers = 1
	cfg.Type = typ
	orig = filepath.Join(dir, "model.gguf")
	if err := testmodels.Write(orig, cfg, gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pruned = filepath.Join(dir, "model.pruned.gguf")
	opts := prune.Options{Threads: 1}
	if sparsity > 0 {
		p := kernel.DefaultParams()
		p.Mode, p.Sparsity = kernel.Sparsity, sparsity
		opts.Params = &p
	}
	r, err := prune.File(context.Background(), orig, pruned, opts)
	if err != nil {
		t.Fatal(err)
	}
	if r.Killed == 0 {
		t.Fatal("the surgery killed nothing: the tamper tests would be vacuous")
	}
	return orig, pruned, r
}

// The outcomes of an audit: every figure agrees, some disagree, or the
// audit refused the files (an error).
const (
	agreed = iota
	disagreed
	refused
)

// auditFile audits with the audit command's arguments ([--against F]
// [--pruned F] [--no-replay] FILE) through the library and returns the
// report and the outcome.
func auditFile(t *testing.T, args ...string) (audit.Report, int) {
	t.Helper()
	var opts audit.Options
	for len(args) > 1 {
		switch args[0] {
		case "--against":
			opts.Against, args = args[1], args[2:]
		case "--pruned":
			opts.Pruned, args = args[1], args[2:]
		case "--no-replay":
			opts.NoReplay, args = true, args[1:]
		default:
			t.Fatalf("auditFile: unknown argument %q", args[0])
		}
	}
	r, err := audit.File(context.Background(), args[0], opts)
	switch {
	case err != nil:
		return audit.Report{}, refused
	case !r.OK():
		return *r, disagreed
	}
	return *r, agreed
}

// wantDisagreement checks that the audit exits 1 and names key (and tensor,
// when given) among its disagreements.
func wantDisagreement(t *testing.T, key, tensor string, args ...string) audit.Report {
	t.Helper()
	r, code := auditFile(t, args...)
	if code != disagreed || r.Verdict != "disagree" {
		t.Fatalf("audit %q: exit %d, verdict %q; want 1 and disagree", args, code, r.Verdict)
	}
	for _, d := range r.Disagreements {
		if d.Key == key && (tensor == "" || d.Tensor == tensor) {
			if d.Stored == "" || d.Recounted == "" {
				t.Errorf("disagreement %+v lacks a stored or recounted value", d)
			}
			return r
		}
	}
	t.Fatalf("audit %q: no disagreement on %s %s among %+v", args, key, tensor, r.Disagreements)
	return r
}

func wantAgree(t *testing.T, args ...string) audit.Report {
	t.Helper()
	r, code := auditFile(t, args...)
	if code != agreed || r.Verdict != "agree" || len(r.Disagreements) != 0 {
		t.Fatalf("audit %q: exit %d, verdict %q, disagreements %+v", args, code, r.Verdict, r.Disagreements)
	}
	return r
}

// rewrite copies the GGUF at in to out through gguf.Create, letting kvs
// edit the metadata and data edit (or drop, returning nil) each tensor's
// bytes.
func rewrite(t *testing.T, in, out string, kvs func([]gguf.KV) []gguf.KV, data func(name string, b []byte) []byte) {
	t.Helper()
	f, err := gguf.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := gguf.Header{Version: f.Version, KVs: append([]gguf.KV(nil), f.KVs...)}
	if kvs != nil {
		h.KVs = kvs(h.KVs)
	}
	var bufs [][]byte
	for _, ti := range f.Tensors {
		b, err := io.ReadAll(f.TensorReader(ti))
		if err != nil {
			t.Fatal(err)
		}
		if data != nil {
			b = data(ti.Name, b)
		}
		if b == nil {
			continue
		}
		h.Tensors = append(h.Tensors, ti)
		bufs = append(bufs, b)
	}
	w, err := gguf.Create(out, h, gguf.CreateOptions{Overwrite: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bufs {
		if _, err := w.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// setKV replaces the value of key.
func setKV(key string, v gguf.Value) func([]gguf.KV) []gguf.KV {
	return func(kvs []gguf.KV) []gguf.KV {
		for i := range kvs {
			if kvs[i].Key == key {
				kvs[i].Value = v
			}
		}
		return kvs
	}
}

func kvValue(t *testing.T, path, key string) gguf.Value {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kv, ok := f.KV(key)
	if !ok {
		t.Fatalf("%s: no key %s", path, key)
	}
	return kv.Value
}

func TestAuditCleanF32(t *testing.T) {
	orig, pruned, rep := prunedPair(t, gguf.TypeF32, 0)
	alone := wantAgree(t, pruned)
	if !alone.Pruned || alone.Weights != rep.Weights || alone.TargetTensors != len(rep.Tensors) {
		t.Errorf("alone: pruned %v weights %+v tensors %d; prune reported %+v %d", alone.Pruned, alone.Weights, alone.TargetTensors, rep.Weights, len(rep.Tensors))
	}
	if alone.Killed == nil || alone.Killed.Exact {
		t.Errorf("alone, the kills cannot be exact: %+v", alone.Killed)
	}
	r := wantAgree(t, "--against", orig, pruned)
	if r.Killed == nil || !r.Killed.Exact || r.Killed.Lo != rep.Killed {
		t.Errorf("against: killed %+v, prune reported %d", r.Killed, rep.Killed)
	}
	if r.ZeroBefore == nil || r.ZeroBefore.Numerator != rep.ZeroBefore || r.ZeroBefore.Denominator != rep.Weights.Target {
		t.Errorf("against: zero_before %+v, prune reported %d of %d", r.ZeroBefore, rep.ZeroBefore, rep.Weights.Target)
	}
	if r.OverTarget == nil || *r.OverTarget != rep.OverTarget || *r.OverModel != rep.OverModel || r.Coverage != rep.Coverage {
		t.Errorf("rates %+v %+v %+v, prune %+v %+v %+v", r.OverTarget, r.OverModel, r.Coverage, rep.OverTarget, rep.OverModel, rep.Coverage)
	}
	for i, ta := range r.Tensors {
		pt := rep.Tensors[i]
		if ta.Name != pt.Name || ta.Killed == nil || ta.Killed.Lo != pt.Killed || !ta.Killed.Exact || ta.Coverage.Numerator != pt.Processed {
			t.Errorf("tensor %s: %+v, prune %+v", ta.Name, ta, pt)
		}
	}
	var exactAgainst int
	for _, c := range r.Checks {
		if c.Status == audit.StatusExact && c.Basis == audit.BasisAgainst {
			exactAgainst++
		}
		if c.Status == audit.StatusBounds {
			t.Errorf("F32 against the original: %s %s only within bounds", c.Key, c.Tensor)
		}
	}
	if exactAgainst == 0 {
		t.Error("no check rests on the original")
	}
}

func TestAuditTampered(t *testing.T) {
	orig, pruned, rep := prunedPair(t, gguf.TypeF32, 0)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.gguf")
	target := rep.Tensors[2].Name

	t.Run("kill turned back", func(t *testing.T) {
		// Restore the original value of one killed weight, in place.
		data, _ := os.ReadFile(pruned)
		fo, _ := gguf.Open(orig)
		fp, _ := gguf.Open(pruned)
		to, _ := fo.Tensor(target)
		tp, _ := fp.Tensor(target)
		a, _ := io.ReadAll(fo.TensorReader(to))
		b, _ := io.ReadAll(fp.TensorReader(tp))
		restored := false
		for i := 0; i+4 <= len(a); i += 4 {
			if binary.LittleEndian.Uint32(b[i:]) == 0 && math.Float32frombits(binary.LittleEndian.Uint32(a[i:])) != 0 {
				copy(data[fp.DataOffset+int64(tp.Offset)+int64(i):], a[i:i+4])
				restored = true
				break
			}
		}
		fo.Close()
		fp.Close()
		if !restored {
			t.Fatal("no kill found")
		}
		if err := os.WriteFile(bad, data, 0o644); err != nil {
			t.Fatal(err)
		}
		// Alone: zeros now != zero_before + exact_zero (F32 targets).
		wantDisagreement(t, "physarium.zero_before", "", bad)
		// Without the replay the per-tensor recount shows one kill fewer;
		// with it the kill count is the kernel's, and the restored weight
		// is caught in the data and in exact_zero.
		for _, args := range [][]string{{"--no-replay", "--against", orig, bad}, {"--against", orig, bad}} {
			key := "physarium.tensors.killed"
			if args[0] != "--no-replay" {
				key = "tensor.data"
				wantDisagreement(t, "physarium.exact_zero", "", args...)
			}
			r := wantDisagreement(t, key, target, args...)
			for _, d := range r.Disagreements {
				if d.Tensor != "" && d.Tensor != target {
					t.Errorf("a kill restored in %s blamed on %s: %+v", target, d.Tensor, d)
				}
			}
		}
	})
	t.Run("physarium.killed edited", func(t *testing.T) {
		rewrite(t, pruned, bad, setKV("physarium.killed", gguf.Uint64(rep.Killed+1)), nil)
		wantDisagreement(t, "physarium.killed", "", bad)
		wantDisagreement(t, "physarium.killed", "", "--against", orig, bad)
	})
	t.Run("per-tensor count edited", func(t *testing.T) {
		k := kvValue(t, pruned, "physarium.tensors.killed").Data.([]uint64)
		k = append([]uint64(nil), k...)
		k[2]--
		rewrite(t, pruned, bad, setKV("physarium.tensors.killed", gguf.Uint64s(k)), nil)
		wantDisagreement(t, "physarium.killed", "", bad) // the sum no longer matches
		wantDisagreement(t, "physarium.tensors.killed", target, "--against", orig, bad)
	})
	t.Run("rate edited", func(t *testing.T) {
		v, _ := kvValue(t, pruned, "physarium.kill_rate.over_target").AsFloat64()
		rewrite(t, pruned, bad, setKV("physarium.kill_rate.over_target", gguf.Float64(math.Nextafter(v, 1))), nil)
		wantDisagreement(t, "physarium.kill_rate.over_target", "", bad)
	})
	t.Run("errata edited", func(t *testing.T) {
		s, _ := kvValue(t, pruned, "physarium.errata").AsString()
		rewrite(t, pruned, bad, setKV("physarium.errata", gguf.String(strings.Replace(s, "100.0000 %", "99.0000 %", 1))), nil)
		wantDisagreement(t, "physarium.errata", "", bad)
	})
	t.Run("non-target tensor changed", func(t *testing.T) {
		rewrite(t, pruned, bad, nil, func(name string, b []byte) []byte {
			if name == "token_embd.weight" {
				b[100] ^= 1
			}
			return b
		})
		// Nothing in the file describes the non-target bytes: alone it
		// passes, against the original it is caught.
		wantAgree(t, bad)
		wantDisagreement(t, "tensor.data", "token_embd.weight", "--against", orig, bad)
	})
	t.Run("target weight changed", func(t *testing.T) {
		rewrite(t, pruned, bad, nil, func(name string, b []byte) []byte {
			if name == target {
				for i := 0; i+4 <= len(b); i += 4 {
					if v := math.Float32frombits(binary.LittleEndian.Uint32(b[i:])); v != 0 {
						binary.LittleEndian.PutUint32(b[i:], math.Float32bits(v*2))
						break
					}
				}
			}
			return b
		})
		wantDisagreement(t, "tensor.data", target, "--against", orig, bad)
	})
	t.Run("KV changed", func(t *testing.T) {
		rewrite(t, pruned, bad, setKV("llama.context_length", gguf.Uint32(1234)), nil)
		wantDisagreement(t, "llama.context_length", "", "--against", orig, bad)
	})
	t.Run("KV type changed", func(t *testing.T) {
		n, _ := kvValue(t, pruned, "llama.context_length").AsUint64()
		rewrite(t, pruned, bad, setKV("llama.context_length", gguf.Uint64(n)), nil)
		wantDisagreement(t, "llama.context_length", "", "--against", orig, bad)
	})
	t.Run("tensor dropped", func(t *testing.T) {
		drop := rep.Tensors[len(rep.Tensors)-1].Name
		edit := func(kvs []gguf.KV) []gguf.KV {
			for i := range kvs {
				switch kvs[i].Key {
				case "physarium.tensors.name":
					x := kvs[i].Value.Data.([]string)
					kvs[i].Value = gguf.Strings(x[:len(x)-1])
				case "physarium.tensors.killed", "physarium.tensors.weights":
					x := kvs[i].Value.Data.([]uint64)
					kvs[i].Value = gguf.Uint64s(x[:len(x)-1])
				}
			}
			return kvs
		}
		rewrite(t, pruned, bad, edit, func(name string, b []byte) []byte {
			if name == drop {
				return nil
			}
			return b
		})
		wantDisagreement(t, "physarium.weights.target", "", bad)
		wantDisagreement(t, "physarium.weights.model", "", bad)
		wantDisagreement(t, "tensor", drop, "--against", orig, bad)
	})
	t.Run("target listed but missing", func(t *testing.T) {
		drop := rep.Tensors[0].Name
		rewrite(t, pruned, bad, nil, func(name string, b []byte) []byte {
			if name == drop {
				return nil
			}
			return b
		})
		wantDisagreement(t, "physarium.tensors.name", drop, bad)
	})
	t.Run("wrong source", func(t *testing.T) {
		rewrite(t, pruned, bad, setKV("physarium.source", gguf.String("model.gguf sha256:"+strings.Repeat("0", 64))), nil)
		wantDisagreement(t, "physarium.source", "", "--against", orig, bad)
	})
	t.Run("key removed", func(t *testing.T) {
		rewrite(t, pruned, bad, func(kvs []gguf.KV) []gguf.KV {
			var out []gguf.KV
			for _, kv := range kvs {
				if kv.Key != "physarium.coverage" {
					out = append(out, kv)
				}
			}
			return out
		}, nil)
		wantDisagreement(t, "physarium.coverage", "", bad)
	})
}

// TestAuditQuantized: a type with a min (Q4_1: re-encoding rounds a few
// survivors to 0), one without a zero code (IQ4_NL) and sparsity mode all
// audit clean against their original, and a kill turned back in a
// quantized block is caught.
func TestAuditQuantized(t *testing.T) {
	for _, tc := range []struct {
		typ      gguf.Type
		sparsity float64
	}{{gguf.TypeQ4_1, 0}, {gguf.TypeQ4_K, 0}, {gguf.TypeIQ4_NL, 0}, {gguf.TypeF16, 0.4}, {gguf.TypeQ8_0, 0.3}} {
		t.Run(tc.typ.String(), func(t *testing.T) {
			orig, pruned, rep := prunedPair(t, tc.typ, tc.sparsity)
			wantAgree(t, pruned)
			r := wantAgree(t, "--against", orig, pruned)
			if r.Killed == nil || rep.Killed < r.Killed.Lo || rep.Killed > r.Killed.Hi || r.ZeroBefore.Numerator != rep.ZeroBefore {
				t.Errorf("killed %+v zero_before %+v; prune reported %d, %d", r.Killed, r.ZeroBefore, rep.Killed, rep.ZeroBefore)
			}
			if tc.sparsity > 0 && r.Mode != "sparsity" {
				t.Errorf("mode %q", r.Mode)
			}
			t.Logf("%s: killed stored %d, recounted %s; zero before %d", tc.typ, rep.Killed, r.Killed, r.ZeroBefore.Numerator)
		})
	}
}

func TestAuditQuantizedKillRestored(t *testing.T) {
	orig, pruned, rep := prunedPair(t, gguf.TypeQ8_0, 0)
	target := rep.Tensors[1].Name
	bad := filepath.Join(t.TempDir(), "bad.gguf")
	fo, _ := gguf.Open(orig)
	to, _ := fo.Tensor(target)
	a, _ := io.ReadAll(fo.TensorReader(to))
	fo.Close()
	// Put the original bytes back into every changed block of one tensor:
	// its kills are gone, its stored count is not.
	rewrite(t, pruned, bad, nil, func(name string, b []byte) []byte {
		if name == target {
			return a
		}
		return b
	})
	wantDisagreement(t, "physarium.tensors.killed", target, "--no-replay", "--against", orig, bad)
	wantDisagreement(t, "tensor.data", target, "--against", orig, bad)
	wantDisagreement(t, "physarium.exact_zero", "", "--against", orig, bad)
}

func TestAuditDenseStories(t *testing.T) {
	needStories(t)
	r := wantAgree(t, stories)
	if r.Pruned || len(r.Tensors) == 0 || r.Weights.Target == 0 || r.Weights.Model <= r.Weights.Target {
		t.Fatalf("dense audit: %+v", r)
	}
	for _, ta := range r.Tensors {
		if !ta.Decoded || ta.Zeros.Denominator != ta.Weights || ta.Zeros.Of != "tensor" || ta.Coverage.Numerator != ta.Weights {
			t.Errorf("tensor %s: %+v", ta.Name, ta)
		}
	}
	if r.Zeros.Denominator != r.Weights.Target || r.Zeros.Of != "target" || r.ZerosOfModel.Of != "model" {
		t.Errorf("zeros %+v over model %+v", r.Zeros, r.ZerosOfModel)
	}
}

// checkStatuses returns how many checks have each status.
func checkStatuses(r audit.Report) map[string]int {
	n := map[string]int{}
	for _, c := range r.Checks {
		n[c.Status]++
	}
	return n
}

// findCheck returns the first check on key (and tensor, when given).
func findCheck(t *testing.T, r audit.Report, key, tensor string) audit.Check {
	t.Helper()
	for _, c := range r.Checks {
		if c.Key == key && (tensor == "" || c.Tensor == tensor) {
			return c
		}
	}
	t.Fatalf("no check on %s %s", key, tensor)
	return audit.Check{}
}

// TestAuditReplayExact: replaying the kernel makes the kills of quantized
// types (with a min, K-quants, no zero code) exact against the original,
// where the data alone only bounds them.
func TestAuditReplayExact(t *testing.T) {
	for _, tc := range []struct {
		typ      gguf.Type
		sparsity float64
	}{{gguf.TypeQ4_K, 0}, {gguf.TypeQ4_1, 0}, {gguf.TypeQ2_K, 0}, {gguf.TypeIQ4_NL, 0}, {gguf.TypeQ4_K, 0.4}} {
		t.Run(fmt.Sprintf("%s_%g", tc.typ, tc.sparsity), func(t *testing.T) {
			orig, pruned, rep := prunedPair(t, tc.typ, tc.sparsity)
			r := wantAgree(t, "--against", orig, pruned)
			if !r.Replay.Ran || r.Replay.Params != rep.Params {
				t.Fatalf("replay %+v, prune params %q", r.Replay, rep.Params)
			}
			if r.Killed == nil || !r.Killed.Exact || r.Killed.Lo != rep.Killed {
				t.Errorf("killed %+v, prune reported %d", r.Killed, rep.Killed)
			}
			st := checkStatuses(r)
			if st[audit.StatusBounds] != 0 || st[audit.StatusUnverifiable] != 0 {
				for _, c := range r.Checks {
					if c.Status != audit.StatusExact {
						t.Errorf("%s %s: %s (%s)", c.Key, c.Tensor, c.Status, c.Note)
					}
				}
			}
			for _, key := range []string{"physarium.killed", "physarium.exact_zero", "physarium.kill_rate.over_target", "physarium.kill_rate.over_model", "physarium.errata", "physarium.params"} {
				var found bool
				for _, c := range r.Checks {
					if c.Key == key && c.Status == audit.StatusExact && (key == "physarium.params" || c.Basis == audit.BasisAgainst) {
						found = true
					}
				}
				if !found {
					t.Errorf("no exact check of %s on the original", key)
				}
			}
			var exactZero uint64
			for i, ta := range r.Tensors {
				pt := rep.Tensors[i]
				if ta.Replay == nil || ta.Killed == nil || !ta.Killed.Exact || ta.Killed.Lo != pt.Killed ||
					ta.Replay.ExactZero != pt.ExactZero || ta.Replay.KillBlocks != pt.Reencoded || ta.Replay.MaxKilledAbs != pt.MaxKilledAbs {
					t.Errorf("tensor %s: replay %+v killed %+v; prune %+v", ta.Name, ta.Replay, ta.Killed, pt)
				}
				exactZero += ta.Replay.ExactZero
			}
			if exactZero != rep.ExactZero {
				t.Errorf("replayed exact_zero %d, prune %d", exactZero, rep.ExactZero)
			}
			// Without the replay the same file is only bounded (for types
			// where re-encoding can zero survivors or has no zero code).
			nr := wantAgree(t, "--no-replay", "--against", orig, pruned)
			if nr.Replay.Ran || !strings.Contains(nr.Replay.Reason, "--no-replay") {
				t.Errorf("--no-replay: %+v", nr.Replay)
			}
			t.Logf("%s: kills %d; with replay %d checks all exact; --no-replay: killed %s, %v", tc.typ, rep.Killed, len(r.Checks), nr.Killed, checkStatuses(nr))
			// Alone, the replay cannot run and says why.
			alone := wantAgree(t, pruned)
			if alone.Replay.Ran || !strings.Contains(alone.Replay.Reason, "--against") {
				t.Errorf("alone: %+v", alone.Replay)
			}
		})
	}
}

// replaceKeys rewrites every physarium.* key of a file with kvs.
func replaceKeys(keys []gguf.KV) func([]gguf.KV) []gguf.KV {
	return func(kvs []gguf.KV) []gguf.KV {
		var out []gguf.KV
		for _, kv := range kvs {
			if !strings.HasPrefix(kv.Key, "physarium.") {
				out = append(out, kv)
			}
		}
		return append(out, keys...)
	}
}

// TestAuditReplayTamperQ4K: in a Q4_K file, a kill turned back and a
// consistent lie about the kill count (every key rewritten to match) are
// both caught exactly by the replay.
func TestAuditReplayTamperQ4K(t *testing.T) {
	orig, pruned, rep := prunedPair(t, gguf.TypeQ4_K, 0)
	bad := filepath.Join(t.TempDir(), "bad.gguf")
	target := rep.Tensors[3].Name

	t.Run("kill block restored", func(t *testing.T) {
		fo, _ := gguf.Open(orig)
		to, _ := fo.Tensor(target)
		a, _ := io.ReadAll(fo.TensorReader(to))
		fo.Close()
		const bb = 144 // bytes of a Q4_K block
		rewrite(t, pruned, bad, nil, func(name string, b []byte) []byte {
			if name == target {
				for i := 0; i+bb <= len(b); i += bb {
					if string(b[i:i+bb]) != string(a[i:i+bb]) {
						copy(b[i:i+bb], a[i:i+bb]) // one changed block back to the original
						break
					}
				}
			}
			return b
		})
		r := wantDisagreement(t, "tensor.data", target, "--against", orig, bad)
		wantDisagreement(t, "physarium.exact_zero", "", "--against", orig, bad)
		for _, d := range r.Disagreements {
			if d.Tensor != "" && d.Tensor != target {
				t.Errorf("blamed on %s: %+v", d.Tensor, d)
			}
		}
	})
	t.Run("one kill fewer, consistently", func(t *testing.T) {
		lie := *rep
		lie.Tensors = append([]prune.TensorReport(nil), rep.Tensors...)
		lie.Tensors[3].Killed--
		lie.Tensors[3].ExactZero--
		lie.Killed--
		lie.ExactZero--
		lie.OverTarget = errata.NewRate(lie.Killed, lie.Weights.Target, "target")
		lie.OverModel = errata.NewRate(lie.Killed, lie.Weights.Model, "model")
		lie.Errata = errata.Wording(lie.Figures())
		rewrite(t, pruned, bad, replaceKeys(prune.Keys(&lie)), nil)
		nr, code := auditFile(t, "--no-replay", "--against", orig, bad)
		t.Logf("without the replay: exit %d, killed recount %s, stored %d", code, nr.Killed, lie.Killed)
		r := wantDisagreement(t, "physarium.tensors.killed", target, "--against", orig, bad)
		for _, d := range r.Disagreements {
			if d.Key == "physarium.tensors.killed" && (d.Tensor != target || d.Stored != fmt.Sprint(rep.Tensors[3].Killed-1) || d.Recounted != fmt.Sprint(rep.Tensors[3].Killed)) {
				t.Errorf("%+v", d)
			}
		}
		wantDisagreement(t, "physarium.killed", "", "--against", orig, bad)
		wantDisagreement(t, "physarium.errata", "", "--against", orig, bad)
	})
	t.Run("params edited", func(t *testing.T) {
		rewrite(t, pruned, bad, setKV("physarium.params", gguf.String("g=1.75 T=4 K=2 h=0.5 theta=0.3")), nil)
		wantDisagreement(t, "physarium.tensors.killed", target, "--against", orig, bad)
		rewrite(t, pruned, bad, setKV("physarium.params", gguf.String("g=1.75 T=4 K=2 h=0.5")), nil)
		wantDisagreement(t, "physarium.params", "", bad)
	})
}

// controlTriple writes a one-block test model of type typ, its pruned twin
// and its control twin.
func controlTriple(t *testing.T, typ gguf.Type) (orig, pruned, control string, r *prune.Report) {
	t.Helper()
	dir := t.TempDir()
	cfg := testmodels.DefaultConfig()
	cfg.Layers, cfg.Type = 1, typ
	orig = filepath.Join(dir, "model.gguf")
	if err := testmodels.Write(orig, cfg, gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pruned = filepath.Join(dir, "model.pruned.gguf")
	control = filepath.Join(dir, "model.control.gguf")
	r, err := prune.File(context.Background(), orig, pruned, prune.Options{Threads: 1, Control: control})
	if err != nil {
		t.Fatal(err)
	}
	if r.Killed == 0 || r.Control == nil {
		t.Fatal("no kills or no control twin")
	}
	return orig, pruned, control, r
}

func reencodedBlocks(r *prune.Report) uint64 {
	var n uint64
	for _, t := range r.Tensors {
		n += t.Reencoded
	}
	return n
}

// TestAuditControlTwin: a control twin audits clean alone, against the
// original (with and without the replay) and with its pruned twin, each
// check as exact as its inputs allow.
func TestAuditControlTwin(t *testing.T) {
	for _, typ := range []gguf.Type{gguf.TypeQ4_K, gguf.TypeIQ4_NL} {
		t.Run(typ.String(), func(t *testing.T) {
			orig, pruned, control, rep := controlTriple(t, typ)
			n := fmt.Sprint(reencodedBlocks(rep))
			alone := wantAgree(t, control)
			if !alone.Control || alone.Weights != rep.Weights {
				t.Fatalf("alone: control %v weights %+v", alone.Control, alone.Weights)
			}
			if c := findCheck(t, alone, "physarium.killed", ""); c.Status != audit.StatusExact || c.Recounted != "0" {
				t.Errorf("killed: %+v", c)
			}
			if c := findCheck(t, alone, "physarium.control_of", ""); c.Status != audit.StatusUnverifiable {
				t.Errorf("control_of alone: %+v", c)
			}
			if c := findCheck(t, alone, "physarium.errata", ""); c.Status != audit.StatusBounds {
				t.Errorf("errata alone: %+v", c)
			}

			r := wantAgree(t, "--against", orig, control)
			if c := findCheck(t, r, "physarium.reencoded_blocks", ""); c.Status != audit.StatusExact || c.Recounted != n {
				t.Errorf("reencoded_blocks with the replay: %+v, prune re-encoded %s", c, n)
			}
			if c := findCheck(t, r, "physarium.errata", ""); c.Status != audit.StatusExact {
				t.Errorf("errata: %+v", c)
			}
			for _, ta := range r.Tensors {
				if ta.Control == nil || ta.Control.NotReencoding != 0 || ta.Replay == nil || ta.Replay.AsExpected != ta.Replay.KillBlocks {
					t.Errorf("%s: control %+v replay %+v", ta.Name, ta.Control, ta.Replay)
				}
			}

			nr := wantAgree(t, "--no-replay", "--against", orig, control)
			if c := findCheck(t, nr, "physarium.reencoded_blocks", ""); c.Status != audit.StatusBounds {
				t.Errorf("reencoded_blocks without replay or pruned twin: %+v", c)
			}

			both := wantAgree(t, "--no-replay", "--against", orig, "--pruned", pruned, control)
			c := findCheck(t, both, "physarium.reencoded_blocks", "")
			wantStatus := audit.StatusExact // a zero code: the pruned twin changed exactly the kill blocks
			if typ == gguf.TypeIQ4_NL {
				wantStatus = audit.StatusBounds
			}
			if c.Status != wantStatus || (wantStatus == audit.StatusExact && c.Recounted != n) {
				t.Errorf("reencoded_blocks with the pruned twin: %+v, want %s (%s)", c, wantStatus, n)
			}
			if c := findCheck(t, both, "physarium.control_of", ""); c.Status != audit.StatusExact || both.PrunedTwinSHA256 != rep.Control.OfSHA256 {
				t.Errorf("control_of: %+v", c)
			}

			all := wantAgree(t, "--against", orig, "--pruned", pruned, control)
			if st := checkStatuses(all); st[audit.StatusBounds] != 0 || st[audit.StatusUnverifiable] != 0 {
				for _, c := range all.Checks {
					if c.Status != audit.StatusExact {
						t.Errorf("with everything: %s %s: %s (%s)", c.Key, c.Tensor, c.Status, c.Note)
					}
				}
			}
			wantAgree(t, "--pruned", pruned, control)
		})
	}
}

// TestAuditControlTampered: a changed block, the control flag removed,
// control_of, reencoded_blocks or a kill figure edited are caught (exit 1),
// and --pruned on a file that is no control twin is a usage error.
func TestAuditControlTampered(t *testing.T) {
	orig, pruned, control, rep := controlTriple(t, gguf.TypeQ4_K)
	bad := filepath.Join(t.TempDir(), "bad.gguf")
	target := rep.Tensors[2].Name

	t.Run("block changed", func(t *testing.T) {
		for _, blk := range []int{0, 1, 2, 3} {
			rewrite(t, control, bad, nil, func(name string, b []byte) []byte {
				if name == target {
					b[blk*144+20] ^= 0x11 // a quant byte of block blk
				}
				return b
			})
			wantAgree(t, bad) // nothing alone describes the bytes
			wantDisagreement(t, "tensor.data", target, "--against", orig, bad)
			wantDisagreement(t, "tensor.data", target, "--no-replay", "--against", orig, bad)
		}
	})
	t.Run("block kept", func(t *testing.T) {
		// Put one re-encoded block back to the original's bytes: only the
		// replay or the pruned twin knows it should have been re-encoded.
		fo, _ := gguf.Open(orig)
		to, _ := fo.Tensor(target)
		a, _ := io.ReadAll(fo.TensorReader(to))
		fo.Close()
		rewrite(t, control, bad, nil, func(name string, b []byte) []byte {
			if name == target {
				for i := 0; i+144 <= len(b); i += 144 {
					if string(b[i:i+144]) != string(a[i:i+144]) {
						copy(b[i:i+144], a[i:i+144])
						break
					}
				}
			}
			return b
		})
		wantDisagreement(t, "tensor.data", target, "--against", orig, bad)
		wantDisagreement(t, "tensor.data", target, "--no-replay", "--against", orig, "--pruned", pruned, bad)
	})
	t.Run("control flag removed", func(t *testing.T) {
		rewrite(t, control, bad, func(kvs []gguf.KV) []gguf.KV {
			var out []gguf.KV
			for _, kv := range kvs {
				if kv.Key != "physarium.control" {
					out = append(out, kv)
				}
			}
			return out
		}, nil)
		wantDisagreement(t, "physarium.control_of", "", bad)
		wantDisagreement(t, "physarium.errata", "", bad)
		wantDisagreement(t, "physarium.tensors.killed", target, "--against", orig, bad)
	})
	t.Run("control flag false", func(t *testing.T) {
		rewrite(t, control, bad, setKV("physarium.control", gguf.Bool(false)), nil)
		wantDisagreement(t, "physarium.control", "", bad)
	})
	t.Run("control_of edited", func(t *testing.T) {
		of, _ := kvValue(t, control, "physarium.control_of").AsString()
		edited := of[:len(of)-1] + map[bool]string{true: "1", false: "0"}[of[len(of)-1] == '0']
		rewrite(t, control, bad, setKV("physarium.control_of", gguf.String(edited)), nil)
		wantDisagreement(t, "physarium.errata", "", bad) // the wording names the old hash
		wantDisagreement(t, "physarium.control_of", "", "--pruned", pruned, bad)
		rewrite(t, control, bad, setKV("physarium.control_of", gguf.String("model.pruned.gguf")), nil)
		wantDisagreement(t, "physarium.control_of", "", bad)
	})
	t.Run("reencoded_blocks edited", func(t *testing.T) {
		rewrite(t, control, bad, setKV("physarium.reencoded_blocks", gguf.Uint64(reencodedBlocks(rep)-1)), nil)
		wantDisagreement(t, "physarium.reencoded_blocks", "", "--against", orig, bad)
		wantDisagreement(t, "physarium.reencoded_blocks", "", "--no-replay", "--against", orig, "--pruned", pruned, bad)
	})
	t.Run("kill figure edited", func(t *testing.T) {
		rewrite(t, control, bad, setKV("physarium.killed", gguf.Uint64(1)), nil)
		wantDisagreement(t, "physarium.killed", "", bad)
	})
	t.Run("wrong pruned twin", func(t *testing.T) {
		// Another pruned file of the same original (other params) is not
		// the one the control names.
		other := filepath.Join(t.TempDir(), "other.gguf")
		p := kernel.DefaultParams()
		p.Theta = 0.5
		if _, err := prune.File(context.Background(), orig, other, prune.Options{Threads: 1, Params: &p}); err != nil {
			t.Fatal(err)
		}
		wantDisagreement(t, "physarium.control_of", "", "--pruned", other, control)
		wantDisagreement(t, "physarium.params", "", "--against", orig, "--pruned", other, control)
	})
	t.Run("pruned given for a pruned file", func(t *testing.T) {
		if _, err := audit.File(context.Background(), pruned, audit.Options{Pruned: pruned}); err == nil {
			t.Error("a pruned twin given for a pruned file was accepted")
		}
	})
}

// TestAuditReplayOtherVersions: a file claiming version 2 is not replayed,
// and the audit says so (the imatrix is not given); --no-replay is said too.
func TestAuditReplayOtherVersions(t *testing.T) {
	orig, pruned, _ := prunedPair(t, gguf.TypeQ8_0, 0)
	bad := filepath.Join(t.TempDir(), "v2.gguf")
	rewrite(t, pruned, bad, func(kvs []gguf.KV) []gguf.KV {
		kvs = setKV("physarium.version", gguf.Uint32(2))(kvs)
		kvs = setKV("physarium.method", gguf.String("activation-flow"))(kvs)
		kvs = setKV("physarium.activation_aware", gguf.Bool(true))(kvs)
		return setKV("physarium.importance", gguf.String("|w|*sqrt(in_sum2/count)"))(kvs)
	}, nil)
	r, _ := auditFile(t, "--against", orig, bad)
	if r.Replay.Ran || !strings.Contains(r.Replay.Reason, "imatrix") {
		t.Fatalf("replay %+v", r.Replay)
	}
	if c := findCheck(t, r, "replay", ""); c.Status != audit.StatusUnverifiable {
		t.Errorf("replay check %+v", c)
	}
	if c := findCheck(t, r, "physarium.params", ""); c.Status != audit.StatusUnverifiable {
		t.Errorf("params check %+v", c)
	}
	if r.Killed == nil || r.Killed.Exact {
		t.Errorf("a v2 Q8_0 file's kills cannot be exact without the replay: %+v", r.Killed)
	}
}

// storiesImatrix computes an importance matrix of stories260K over the
// sample text with the real llama-imatrix (skipped when PHYSARIUM_LLAMA is
// unset).
func storiesImatrix(t *testing.T) string {
	t.Helper()
	needStories(t)
	llamacpp.Require(t)
	out := filepath.Join(t.TempDir(), "stories.imatrix.gguf")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := llamacpp.Imatrix(ctx, stories, "../../shared/models/tinystories_sample.txt", 64, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAuditMethods: files written by prune with every method other than
// magnitude-flow (the wanda and magnitude baselines, version 0; v2
// activation-flow in natural and sparsity mode, and with a target missing
// from the imatrix pruned on |w| alone) audit clean alone and against the
// original, are reported as not verifiable by replay, get exact kill
// counts in sparsity mode from the count rule, and tampering is caught.
func TestAuditMethods(t *testing.T) {
	imat := storiesImatrix(t)
	dir := t.TempDir()
	// An imatrix without blk.1.attn_k.weight, for --imatrix-missing v1.
	const missing = "blk.1.attn_k.weight"
	part := filepath.Join(dir, "part.imatrix.gguf")
	rewrite(t, imat, part, nil, func(name string, b []byte) []byte {
		if strings.HasPrefix(name, missing+".") {
			return nil
		}
		return b
	})
	sp := kernel.DefaultParams()
	sp.Mode, sp.Sparsity = kernel.Sparsity, 0.5
	files := map[string]string{}
	for _, c := range []struct {
		name     string
		opts     prune.Options
		version  uint32
		sparsity bool
	}{
		{"wanda", prune.Options{Method: method.Wanda, Imatrix: imat, Params: &sp}, 0, true},
		{"magnitude", prune.Options{Method: method.Magnitude, Params: &sp}, 0, true},
		{"v2-natural", prune.Options{Imatrix: imat}, 2, false},
		{"v2-sparsity", prune.Options{Imatrix: imat, Params: &sp}, 2, true},
		{"v2-sparsity-tile", prune.Options{Imatrix: imat, Rank: method.RankTile, Params: &sp}, 2, true},
		{"v2-fallback", prune.Options{Imatrix: part, ImatrixMissingV1: true, Params: &sp}, 2, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(dir, c.name+".gguf")
			c.opts.Threads = 1
			pr, err := prune.File(context.Background(), stories, out, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			files[c.name] = out
			if v, _ := kvValue(t, out, "physarium.version").AsUint64(); v != uint64(c.version) || pr.Killed == 0 {
				t.Fatalf("version %d, killed %d", v, pr.Killed)
			}
			if c.name == "v2-fallback" && (len(pr.ImatrixMissing) != 1 || pr.ImatrixMissing[0] != missing) {
				t.Fatalf("imatrix missing %q", pr.ImatrixMissing)
			}
			wantAgree(t, out)
			r := wantAgree(t, "--against", stories, out)
			// The magnitude baseline is replayed from its rule; the others
			// need the imatrix's mask, which the audit cannot recompute.
			replayed := c.name == "magnitude"
			if r.Replay.Ran != replayed || !replayed && !strings.Contains(r.Replay.Reason, "not verifiable by replay") {
				t.Errorf("replay %+v", r.Replay)
			}
			if replayed && (len(r.Tensors) == 0 || r.Tensors[0].Replay == nil) {
				t.Errorf("no per-tensor replay")
			}
			if c.sparsity && (r.Killed == nil || !r.Killed.Exact) || r.Killed == nil || pr.Killed < r.Killed.Lo || pr.Killed > r.Killed.Hi {
				t.Errorf("killed %+v, prune %d", r.Killed, pr.Killed)
			}
			for _, key := range []string{"physarium.version", "physarium.method", "physarium.activation_aware", "physarium.importance", "physarium.errata"} {
				if ck := findCheck(t, r, key, ""); ck.Status == audit.StatusDisagrees || ck.Status == audit.StatusUnverifiable {
					t.Errorf("%s: %+v", key, ck)
				}
			}
			t.Logf("%s: killed %d of %d target weights; audit killed %s; zero before %d", c.name, pr.Killed, pr.Weights.Target, r.Killed, pr.ZeroBefore)
		})
	}
	bad := filepath.Join(dir, "bad.gguf")
	for _, tc := range []struct {
		file, key string
		v         gguf.Value
		want      string // the disagreement named with the original
		alone     bool   // caught without the original too
	}{
		{"wanda", "physarium.killed", gguf.Uint64(1), "physarium.killed", true},
		{"wanda", "physarium.activation_aware", gguf.Bool(false), "physarium.activation_aware", true},
		{"wanda", "physarium.version", gguf.Uint32(2), "physarium.version", true},
		{"magnitude", "physarium.mode", gguf.String("natural"), "physarium.mode", true},
		{"magnitude", "physarium.importance", gguf.String("|w|"), "physarium.importance", true},
		{"v2-natural", "physarium.importance", gguf.String("|w|"), "physarium.importance", true},
		{"v2-natural", "physarium.method", gguf.String("wanda"), "physarium.version", true},
		{"v2-sparsity", "physarium.imatrix", gguf.String("other.gguf format=gguf datasets=x chunks=1 chunk_size=64 missing(v1 food |w|)=token_embd.weight"), "physarium.imatrix", true},
		// The stored sparsity no longer fixes the stored kill counts.
		{"v2-sparsity", "physarium.params", gguf.String("g=1.75 T=4 K=2 h=0.5 theta=0.29 sparsity=0.6"), "sparsity.rule", false},
		// The magnitude replay at the stored sparsity refutes the counts.
		{"magnitude", "physarium.params", gguf.String("g=1.75 T=4 K=2 h=0.5 theta=0.29 sparsity=0.4"), "physarium.tensors.killed", false},
	} {
		t.Run("tampered "+tc.file+" "+tc.key, func(t *testing.T) {
			rewrite(t, files[tc.file], bad, setKV(tc.key, tc.v), nil)
			if _, code := auditFile(t, bad); (code == disagreed) != tc.alone {
				t.Errorf("alone: exit %d, caught alone %v", code, tc.alone)
			}
			wantDisagreement(t, tc.want, "", "--against", stories, bad)
		})
	}
	// Move one kill of an F32 tensor to another weight, counts unchanged:
	// only the magnitude replay can see it; for wanda and v2 the audit has
	// no mask to compare with, and says so.
	t.Run("kill moved", func(t *testing.T) {
		const target = "blk.2.ffn_up.weight"
		fo, err := gguf.Open(stories)
		if err != nil {
			t.Fatal(err)
		}
		to, _ := fo.Tensor(target)
		orig, err := io.ReadAll(fo.TensorReader(to))
		fo.Close()
		if err != nil {
			t.Fatal(err)
		}
		move := func(name string, b []byte) []byte {
			if name != target {
				return b
			}
			killed, kept := -1, -1
			for i := 0; i+4 <= len(b) && (killed < 0 || kept < 0); i += 4 {
				v := binary.LittleEndian.Uint32(b[i:])
				if v == 0 && killed < 0 {
					killed = i
				} else if v != 0 && kept < 0 {
					kept = i
				}
			}
			if killed < 0 || kept < 0 {
				t.Fatal("no kill or no survivor")
			}
			b = append([]byte(nil), b...)
			copy(b[killed:killed+4], orig[killed:killed+4])
			binary.LittleEndian.PutUint32(b[kept:], 0)
			return b
		}
		rewrite(t, files["magnitude"], bad, nil, move)
		wantAgree(t, bad)
		wantDisagreement(t, "tensor.data", target, "--against", stories, bad)
		rewrite(t, files["wanda"], bad, nil, move)
		r := wantAgree(t, "--against", stories, bad)
		t.Logf("wanda, a kill moved: agrees (replay: %s)", r.Replay.Reason)
	})
	t.Run("imatrix removed from wanda", func(t *testing.T) {
		rewrite(t, files["wanda"], bad, func(kvs []gguf.KV) []gguf.KV {
			var out []gguf.KV
			for _, kv := range kvs {
				if kv.Key != "physarium.imatrix" {
					out = append(out, kv)
				}
			}
			return out
		}, nil)
		wantDisagreement(t, "physarium.imatrix", "", bad)
	})
}

// stories is a real trained model (llama architecture, 5 blocks, F32).
const stories = "../../shared/models/stories260K.gguf"

func needStories(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(stories); err != nil {
		t.Fatalf("test model missing: %v", err)
	}
}
