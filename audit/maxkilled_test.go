package audit_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/physarium/physarium-gguf/audit"
	"github.com/physarium/physarium-gguf/gguf"
)

// TestAuditMaxKilledRel: physarium.max_killed_rel is written for a type
// without a zero code (IQ4_NL), recomputed exactly from the file's values
// at the replayed kills, unverifiable without the original, and a changed
// value, a missing key or a key on a file whose types all hold 0 disagree;
// a control twin states 0.
func TestAuditMaxKilledRel(t *testing.T) {
	const key = "physarium.max_killed_rel"
	orig, pruned, rep := prunedPair(t, gguf.TypeIQ4_NL, 0)
	var want float64
	for _, tr := range rep.Tensors {
		want = max(want, tr.MaxKilledRel)
	}
	stored, _ := kvValue(t, pruned, key).AsFloat64()
	if stored != want || !(want > 0 && want <= 1) {
		t.Fatalf("stored %v, report %v: want the same value in (0, 1]", stored, want)
	}
	r := wantAgree(t, "--against", orig, pruned)
	if c := findCheck(t, r, key, ""); c.Status != audit.StatusExact || c.Recounted != fmt.Sprint(want) {
		t.Errorf("against the original: %+v", c)
	}
	if c := findCheck(t, wantAgree(t, pruned), key, ""); c.Status != audit.StatusUnverifiable {
		t.Errorf("alone: %+v", c)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.gguf")
	rewrite(t, pruned, bad, setKV(key, gguf.Float64(want*0.5)), nil)
	wantDisagreement(t, key, "", "--against", orig, bad)
	missing := filepath.Join(dir, "missing.gguf")
	rewrite(t, pruned, missing, dropKV(key), nil)
	wantDisagreement(t, key, "", missing)

	_, q8, _ := prunedPair(t, gguf.TypeQ8_0, 0)
	f, err := gguf.Open(q8)
	if err != nil {
		t.Fatal(err)
	}
	_, has := f.KV(key)
	f.Close()
	if has {
		t.Errorf("Q8_0 (a type with a zero code) got %s", key)
	}
	extra := filepath.Join(dir, "extra.gguf")
	rewrite(t, q8, extra, func(kvs []gguf.KV) []gguf.KV {
		return append(kvs, gguf.KV{Key: key, Value: gguf.Float64(0)})
	}, nil)
	wantDisagreement(t, key, "", extra)

	_, _, control, _ := controlTriple(t, gguf.TypeIQ4_NL)
	if c := findCheck(t, wantAgree(t, control), key, ""); c.Status != audit.StatusExact || c.Stored != "0" {
		t.Errorf("control twin: %+v", c)
	}
}

// dropKV removes key from the metadata.
func dropKV(key string) func([]gguf.KV) []gguf.KV {
	return func(kvs []gguf.KV) []gguf.KV {
		out := kvs[:0]
		for _, kv := range kvs {
			if kv.Key != key {
				out = append(out, kv)
			}
		}
		return out
	}
}
