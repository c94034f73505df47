package cli

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/audit"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/prune"
	"github.com/physarium/physarium-gguf/testmodels"
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

// auditJSON runs the audit command with --json and returns the decoded
// report and the exit code.
func auditJSON(t *testing.T, args ...string) (audit.Report, int) {
	t.Helper()
	out, stderr, err := run(t, append([]string{"audit", "--json"}, args...)...)
	code := ExitCode(err)
	var r audit.Report
	if code != ExitUsage {
		if jerr := json.Unmarshal([]byte(out), &r); jerr != nil {
			t.Fatalf("audit %q: exit %d, bad JSON: %v (stderr %q)", args, code, jerr, stderr)
		}
	}
	return r, code
}

// wantDisagreement checks that the audit exits 1 and names key (and tensor,
// when given) among its disagreements.
func wantDisagreement(t *testing.T, key, tensor string, args ...string) audit.Report {
	t.Helper()
	r, code := auditJSON(t, args...)
	if code != ExitFailure || r.Verdict != "disagree" {
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
	r, code := auditJSON(t, args...)
	if code != ExitOK || r.Verdict != "agree" || len(r.Disagreements) != 0 {
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
	// Human output names the verdict and the denominators.
	out, _, err := run(t, "audit", "--against", orig, pruned)
	if err != nil || !strings.Contains(out, "verdict: agree") || !strings.Contains(out, "target weights)") {
		t.Errorf("text audit: %v\n%s", err, out)
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
	out := mustRun(t, "audit", stories)
	if !strings.Contains(out, "no physarium.* keys") || !strings.Contains(out, "tensor weights)") {
		t.Errorf("text:\n%s", out)
	}
}

func TestAuditErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.gguf")
	os.WriteFile(garbage, []byte("this is not a GGUF file at all, just text"), 0o644)
	for _, args := range [][]string{
		{"audit"},
		{"audit", garbage},
		{"audit", filepath.Join(dir, "missing.gguf")},
		{"audit", "a", "b"},
		{"audit", "--against", garbage, garbage},
		{"audit", "--nope", garbage},
	} {
		_, _, err := run(t, args...)
		if ExitCode(err) != ExitUsage {
			t.Errorf("%q: exit %d (%v), want 2", args, ExitCode(err), err)
		}
	}
}
