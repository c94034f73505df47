package calibrate

import (
	"errors"
	"fmt"
	"testing"
)

// layerInputs makes the four inputs of each of layers llama layers
// (attention, attention output, FFN, FFN down) of the given widths.
func layerInputs(layers, embd, ff int) []*input {
	var ins []*input
	for l := range layers {
		for k, w := range []int{embd, embd, embd, ff} {
			ins = append(ins, &input{name: fmt.Sprintf("blk.%d.in%d", l, k), index: len(ins), layer: l, a: newAcc(w, 1)})
		}
	}
	return ins
}

// shape describes groups as their sizes in inputs.
func shape(groups [][]*input) []int {
	var s []int
	for _, g := range groups {
		s = append(s, len(g))
	}
	return s
}

// TestPlanGroups: by default a pass holds the largest layer's Grams or
// DefaultPassFloor, whichever is more, in whole layers; a budget packs
// whole layers; a limit under a layer splits it by inputs (packed across
// the layer boundary: 3 x 16 MiB, then 127 MiB + 2 x 16 MiB, ...); an
// input over the limit is refused.
func TestPlanGroups(t *testing.T) {
	small := layerInputs(5, 64, 172) // 169 KiB a layer: all in one pass
	wide := layerInputs(5, 2048, 5632)
	layer := groupBytes(wide[:4]) // 169 MiB
	for _, tc := range []struct {
		name          string
		ins           []*input
		budget, limit uint64
		want          string
	}{
		{"small default", small, 0, 1 << 40, "[20]"},
		{"small one layer", small, groupBytes(small[:4]), 1 << 40, "[4 4 4 4 4]"},
		{"wide default", wide, 0, 1 << 40, "[4 4 4 4 4]"},
		{"wide two layers", wide, 2 * layer, 1 << 40, "[8 8 4]"},
		{"wide limit under a layer", wide, 0, layer - 1, "[3 3 3 3 3 3 2]"},
	} {
		groups, err := planGroups(tc.ins, tc.budget, tc.limit)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := fmt.Sprint(shape(groups)); got != tc.want {
			t.Errorf("%s: groups %s, want %s", tc.name, got, tc.want)
		}
		var n int
		for _, g := range groups {
			n += len(g)
			if groupBytes(g) > tc.limit || len(g) > 1 && groupBytes(g) > max(tc.budget, DefaultPassFloor, layer) {
				t.Errorf("%s: a group of %d bytes", tc.name, groupBytes(g))
			}
		}
		if n != len(tc.ins) {
			t.Errorf("%s: %d inputs planned of %d", tc.name, n, len(tc.ins))
		}
	}
	if _, err := planGroups(wide, 0, wide[3].gramBytes()-1); !errors.Is(err, ErrMemory) {
		t.Fatalf("an input over the limit: %v", err)
	}
}
