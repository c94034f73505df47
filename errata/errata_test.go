package errata_test

import (
	"testing"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/prune"
)

// TestTableMatchesPrune checks that the key table and the wording are what
// prune writes today.
func TestTableMatchesPrune(t *testing.T) {
	r := &prune.Report{Version: 1, Method: "magnitude-flow", Importance: "|w|", Killed: 7, TargetCount: 2, Imatrix: "x"}
	r.Weights.Target, r.Weights.Processed, r.Weights.Model = 100, 100, 300
	r.OverTarget = prune.NewRate(7, 100, "target")
	r.OverModel = prune.NewRate(7, 300, "model")
	r.Coverage = prune.NewRate(100, 100, "target")
	want := prune.Errata(r)
	got := errata.Wording(errata.Figures{Version: 1, Method: "magnitude-flow", Importance: "|w|", Killed: 7, TargetCount: 2, Weights: errata.Weights{Target: 100, Processed: 100, Model: 300}})
	if got != want {
		t.Errorf("wording:\n got %s\nwant %s", got, want)
	}
	vals := map[string]gguf.Value{}
	keys := prune.Keys(r)
	for _, kv := range keys {
		k, ok := errata.Lookup(kv.Key[len(errata.KeyPrefix):])
		if !ok || !k.Has(kv.Value) {
			t.Errorf("%s: not in the table with its type", kv.Key)
		}
		vals[k.Name] = kv.Value
	}
	for i, kv := range errata.Ordered(vals) {
		if kv.Key != keys[i].Key {
			t.Errorf("key %d: %s, prune writes %s", i, kv.Key, keys[i].Key)
		}
	}
}

func TestBands(t *testing.T) {
	var got [][2]int
	for r0, n := range errata.Bands(600) {
		got = append(got, [2]int{r0, n})
	}
	if len(got) != 3 || got[2] != [2]int{512, 88} {
		t.Errorf("bands of 600 rows: %v", got)
	}
	if _, err := errata.ParseLayers("0-x"); err == nil {
		t.Error("0-x accepted")
	}
}
