package errata_test

import (
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
)

// figures are the numbers of the wording tests: 7 of 100 target weights of
// 2 tensors killed, 90 processed, 300 in the model.
var figures = errata.Figures{Method: "activation-flow", Importance: "F", Killed: 7, TargetCount: 2, Weights: errata.Weights{Target: 100, Processed: 90, Model: 300}}

const (
	head    = "surgery (activation-flow): 7 of 100 target projection weights killed (7.0000 %, denominator: all weights of the 2 target tensors); 7 of 300 model weights (2.3333 %, denominator: every tensor in the file). Tile coverage of the target tensors: 90.0000 % (non-overlapping 256x256 tiles). "
	closing = " These are surgery figures; perplexity or benchmark numbers come from a separate evaluation and must be quoted separately, with their own test set."
)

// TestWording checks the wording of every version, and of a control twin,
// word for word.
func TestWording(t *testing.T) {
	for v, food := range []string{
		"Baseline, no Physarium kernel ran (physarium.version 0): the activation-flow method killed the weights with the smallest F.",
		"v1 eats static weight magnitude only: it sees no activations, no gradients, no contribution to the loss.",
		"v2 eats F: activation statistics from an importance matrix, no gradients; stability is not computed.",
	} {
		f := figures
		f.Version = v
		want := "Physarium-v" + string(rune('0'+v)) + " " + head + food + closing
		if got := errata.Wording(f); got != want {
			t.Errorf("version %d:\n got %s\nwant %s", v, got, want)
		}
	}
	got := errata.ControlWording(errata.ControlFigures{Version: 2, Weights: figures.Weights, TargetCount: 2, Reencoded: 3, Of: "p.gguf", OfSHA256: "cd"})
	want := "Physarium-v2 control twin (re-encoding only): 0 of 100 target projection weights killed (0.0000 %, denominator: all weights of the 2 target tensors); 0 of 300 model weights (0.0000 %, denominator: every tensor in the file). The 3 blocks that the pruned twin p.gguf (sha256 cd) re-encoded are re-encoded here the same way from the original values, with nothing zeroed; every other block is the original. perplexity(control) - perplexity(original) is the re-encoding cost, perplexity(pruned) - perplexity(control) the pruning cost." + closing
	if got != want {
		t.Errorf("control:\n got %s\nwant %s", got, want)
	}
}

// TestOrdered checks the order of the keys of a control twin, every key of
// the table present, the wording last.
func TestOrdered(t *testing.T) {
	vals := map[string]gguf.Value{}
	for _, k := range errata.Keys {
		vals[k.Name] = gguf.Bool(true)
	}
	var got []string
	for _, kv := range errata.Ordered(vals) {
		got = append(got, strings.TrimPrefix(kv.Key, errata.KeyPrefix))
	}
	want := "version method activation_aware importance tile tiling mode params pattern targets weights.target weights.processed weights.model killed zero_before exact_zero max_killed_rel retype nonfinite_copied kill_rate.over_target kill_rate.over_model coverage tensors.name tensors.killed tensors.weights source imatrix reconstructed calibration reconstruction survivors_changed reconstruction_error control control_of reencoded_blocks errata"
	if strings.Join(got, " ") != want {
		t.Errorf("order:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	delete(vals, errata.KeyImatrix)
	if n := len(errata.Ordered(vals)); n != len(errata.Keys)-1 {
		t.Errorf("%d keys without imatrix, want %d", n, len(errata.Keys)-1)
	}
	defer func() {
		if recover() == nil {
			t.Error("a key outside the table was accepted")
		}
	}()
	errata.Ordered(map[string]gguf.Value{"no.such.key": gguf.Bool(true)})
}

func TestKeyTypes(t *testing.T) {
	k, ok := errata.Lookup(errata.KeyTensorsKilled)
	if !ok || k.TypeText() != "ARRAY of UINT64" || k.Full() != "physarium.tensors.killed" {
		t.Fatalf("tensors.killed: %+v %q", k, k.TypeText())
	}
	if !k.Has(gguf.Uint64s([]uint64{1})) || k.Has(gguf.Strings([]string{"x"})) || k.Has(gguf.Uint64(1)) {
		t.Error("Has accepts the wrong types")
	}
	if _, ok := errata.Lookup("no.such.key"); ok {
		t.Error("Lookup found an unknown key")
	}
}

func TestRates(t *testing.T) {
	r := errata.NewRate(1450, 6525, errata.OfTarget)
	if s := r.String(); s != "22.2222 % (1450 of 6525 target weights)" {
		t.Errorf("rate %q", s)
	}
	if z := errata.NewRate(3, 0, errata.OfModel); z.Percent != 0 || errata.Ratio(3, 0) != 0 {
		t.Errorf("a zero denominator: %+v", z)
	}
	if errata.Ratio(7, 300) != 7.0/300 {
		t.Error("Ratio")
	}
}

func TestTiled(t *testing.T) {
	for _, tc := range []struct {
		shape []uint64
		want  uint64
	}{
		{[]uint64{256, 256}, 256 * 256},
		{[]uint64{300, 700}, 300 * 700},    // partial tiles on both axes
		{[]uint64{64, 96, 3}, 64 * 96 * 3}, // experts tiled separately
		{[]uint64{512, 260, 2, 2}, 512 * 260 * 4},
		{[]uint64{1000}, 0}, // 1-D: not tiled
	} {
		if got := errata.Tiled(tc.shape); got != tc.want {
			t.Errorf("Tiled(%v) = %d, want %d", tc.shape, got, tc.want)
		}
	}
}

func TestBands(t *testing.T) {
	var got [][2]int
	for r0, n := range errata.Bands(600) {
		got = append(got, [2]int{r0, n})
	}
	if len(got) != 3 || got[0] != [2]int{0, 256} || got[1] != [2]int{256, 256} || got[2] != [2]int{512, 88} {
		t.Errorf("bands of 600 rows: %v", got)
	}
	if errata.BandsPerMatrix(600) != 3 || errata.BandsPerMatrix(256) != 1 {
		t.Error("BandsPerMatrix")
	}
	for range errata.Bands(600) {
		break // an early stop must not panic
	}
}

// TestQuotas checks that the row and band quotas add up to the matrix's
// round(s*rows*n), every row getting floor or ceil of s*n.
func TestQuotas(t *testing.T) {
	const rows, n, s = 600, 33, 0.37
	sum := 0
	for o := range rows {
		q := errata.RowQuota(o, n, s)
		if q != 12 && q != 13 {
			t.Fatalf("row %d: quota %d", o, q)
		}
		sum += q
	}
	bands := 0
	for r0, nr := range errata.Bands(rows) {
		bands += errata.BandQuota(r0, nr, n, s)
	}
	if want := 7326; sum != want || bands != want || errata.TileQuota(rows*n, s) != want {
		t.Errorf("row quotas %d, band quotas %d, want %d", sum, bands, want)
	}
}

func TestTargets(t *testing.T) {
	entries := errata.TargetEntries([]string{`^x\.`}, []string{`attn_k`}, "0-1,3")
	sel, _, err := errata.ParseTargets(entries)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"blk.0.attn_q.weight": true, "blk.1.attn_k.weight": false, "blk.2.attn_q.weight": false,
		"blk.3.ffn_down_exps.weight": true, "x.y": false, "token_embd.weight": false,
	} {
		if sel.Match(name) != want {
			t.Errorf("%s: match %v", name, !want)
		}
	}
	if _, entry, err := errata.ParseTargets([]string{errata.DefaultTargetPattern, "bogus"}); err == nil || entry != "bogus" {
		t.Errorf("a bogus entry: %q %v", entry, err)
	}
	if _, err := errata.ParseLayers("0-x"); err == nil || err.Error() != `errata: layers "0-x": "0-x" is not a block index or range` {
		t.Errorf("0-x: %v", err)
	}
	if l, ok := errata.Layer("blk.12.attn_q.weight"); !ok || l != 12 || errata.Kind("blk.12.ffn_up_exps.weight") != "ffn_up_exps" {
		t.Error("Layer or Kind")
	}
}
