package kernel

import "testing"

// TestAliveRule exercises the rule on a fabricated D_T (the dynamics keep
// rows and columns alive by themselves on the test distributions, see
// TestNoRowOrColumnDies): row 1 and column 2 would lose every weight.
func TestAliveRule(t *testing.T) {
	k, err := New(Generic, DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	const R, C, cp = 3, 4, 8
	d := [R][C]float32{
		{1.5, 1.4, 0.01, 1.3},
		{0.02, 0.05, 0.03, 0.04}, // row 1: all starved, 0.05 is its strongest
		{1.2, 0.0, 0.02, 1.1},    // (2,1) is a zero weight; column 2 all starved
	}
	w := []float32{1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1}
	k.arena = make([]float32, R*cp)
	var sum float32
	for o := 0; o < R; o++ {
		for i := 0; i < C; i++ {
			k.arena[o*cp+i] = d[o][i]
			sum += d[o][i]
		}
	}
	tl := Tile{W: w, Rows: R, Cols: C, Mask: make([]byte, R*C)}
	tl.Stats = TileStats{Weights: R * C, ZeroBefore: 1}
	j := job{D: 0, Rows: R, Cp: cp, Rp: 8, N: 11, SumD: sum}
	k.finish(&tl, &j, 0)
	// Column 2: candidates (0,2)=0.01, (1,2)=0.03, (2,2)=0.02 -> keeps (1,2).
	want := []byte{
		0, 0, 1, 0,
		1, 0, 0, 1,
		0, 0, 1, 0,
	}
	if string(tl.Mask) != string(want) {
		t.Fatalf("mask %v, want %v", tl.Mask, want)
	}
	if tl.Stats.Rescued != 2 || tl.Stats.Killed != 4 {
		t.Fatalf("stats %+v, want 2 rescued, 4 killed", tl.Stats)
	}
	aliveCheck(t, "fabricated", &tl)
}
