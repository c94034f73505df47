package kernel

import (
	"math"
	"testing"
)

// TestTileD checks the optional D_T output: in every implementation and
// mode it holds exactly the D_T the kill rule used (the bits the test hook
// sees), 0 at zero weights and at every weight of an all-zero tile (also
// when the buffer held stale values), and asking for it changes neither the
// mask nor the figures.
func TestTileD(t *testing.T) {
	rng := newRNG(77)
	shapes := [][2]int{{1, 1}, {3, 17}, {64, 64}, {172, 64}, {64, 172}, {256, 256}, {9, 200}}
	ps := DefaultParams()
	ps.Mode, ps.Sparsity = Sparsity, 0.45
	for _, impl := range []Impl{Generic, AVX2, AVX512} {
		if !Available(impl) {
			continue
		}
		for _, p := range []Params{DefaultParams(), ps} {
			var gts []*guardedTile
			for x, s := range shapes {
				gts = append(gts, newGuarded(rng, s[0], s[1], x))
			}
			zero := newGuarded(rng, 5, 9, 0)
			for o := 0; o < zero.tile.Rows; o++ {
				clear(zero.tile.W[o*zero.tile.Stride : o*zero.tile.Stride+zero.tile.Cols])
			}
			gts = append(gts, zero)
			want := runAll(t, impl, p, gts)

			k, err := New(impl, p)
			if err != nil {
				t.Fatal(err)
			}
			tiles := make([]Tile, len(gts))
			for i, g := range gts {
				tiles[i] = g.tile
				tiles[i].Mask = nil
				tiles[i].D = make([]float32, g.tile.Rows*g.tile.Cols)
				for x := range tiles[i].D {
					tiles[i].D[x] = 7 // stale
				}
			}
			if err := k.Run(tiles); err != nil {
				t.Fatal(err)
			}
			for i, tl := range tiles {
				if tl.Stats != want[i].stats || string(tl.Mask) != string(want[i].mask) {
					t.Fatalf("%s %v tile %d: asking for D changed the result", impl, p.Mode, i)
				}
				stride := tl.Stride
				for o := 0; o < tl.Rows; o++ {
					for c := 0; c < tl.Cols; c++ {
						x := o*tl.Cols + c
						got := math.Float32bits(tl.D[x])
						var w uint32
						if want[i].d != nil {
							w = want[i].d[x]
						}
						if got != w {
							t.Fatalf("%s %v tile %d (%d,%d): D %v, kernel used %v", impl, p.Mode, i, o, c, tl.D[x], math.Float32frombits(w))
						}
						if tl.W[o*stride+c] == 0 && tl.D[x] != 0 {
							t.Fatalf("%s %v tile %d (%d,%d): zero weight has D %v", impl, p.Mode, i, o, c, tl.D[x])
						}
					}
				}
			}
		}
	}
}
