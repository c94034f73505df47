package method

import (
	"math"

	"github.com/physarium/physarium-gguf/kernel"

	"github.com/physarium/physarium-gguf/errata"
)

// Rule is how a sparsity-mode method fixes the number of weights each
// group of a matrix (a tile, a row, a band, the matrix) ends with at
// zero; the weights already zero count first, so a group with z zeros
// and quota q loses max(q-z, 0) weights. The audit recounts the kills of
// a tensor from the original's zeros by its Rule.
type Rule interface {
	// String states the rule in the audit's notes.
	String() string
	// Kills returns the kills the rule fixes for one matrix of rows rows
	// of cols weights at sparsity s; zeros(r0, r1, c0, c1) is the number of
	// the original's zeros in rows [r0, r1) and in the tile columns
	// [c0, c1) (each errata.TileSize weights wide, the last one cut short).
	Kills(rows, cols int, s float64, zeros func(r0, r1, c0, c1 int) int) uint64
}

// sparsityOnly is r in sparsity mode, else nil: nothing fixes the count
// of kills in natural mode.
func sparsityOnly(cfg Config, r Rule) Rule {
	if cfg.Params.Mode != kernel.Sparsity {
		return nil
	}
	return r
}

// lose is the kills of a group with quota q and z zeros.
func lose(q, z int) uint64 { return uint64(max(q-z, 0)) }

// tileColumns is the number of errata.TileSize-wide tile columns of a row
// of cols weights.
func tileColumns(cols int) int { return (cols + errata.TileSize - 1) / errata.TileSize }

// TileRule: each 256x256 tile ends with round(s*n) zeros (the kernel's
// sparsity mode).
type TileRule struct{}

// String implements Rule.
func (TileRule) String() string { return "each 256x256 tile ends with round(s*n) zeros" }

// Kills implements Rule.
func (TileRule) Kills(rows, cols int, s float64, zeros func(r0, r1, c0, c1 int) int) uint64 {
	var k uint64
	for r0, nr := range errata.Bands(rows) {
		for c := range tileColumns(cols) {
			w := min(errata.TileSize, cols-c*errata.TileSize)
			k += lose(errata.TileQuota(nr*w, s), zeros(r0, r0+nr, c, c+1))
		}
	}
	return k
}

// RowRule: output row o of n weights ends with errata.RowQuota(o, n, s)
// zeros.
type RowRule struct{}

// String implements Rule.
func (RowRule) String() string {
	return "output row o of n weights ends with round(s*(o+1)*n)-round(s*o*n) zeros"
}

// Kills implements Rule.
func (RowRule) Kills(rows, cols int, s float64, zeros func(r0, r1, c0, c1 int) int) uint64 {
	var k uint64
	for o := range rows {
		k += lose(errata.RowQuota(o, cols, s), zeros(o, o+1, 0, tileColumns(cols)))
	}
	return k
}

// BandRule: the 256-row band of rows [o0, o0+r) ends with
// errata.BandQuota(o0, r, n, s) zeros.
type BandRule struct{}

// String implements Rule.
func (BandRule) String() string {
	return "the 256-row band of rows [o0, o0+r) ends with round(s*(o0+r)*n)-round(s*o0*n) zeros"
}

// Kills implements Rule.
func (BandRule) Kills(rows, cols int, s float64, zeros func(r0, r1, c0, c1 int) int) uint64 {
	var k uint64
	for r0, nr := range errata.Bands(rows) {
		k += lose(errata.BandQuota(r0, nr, cols, s), zeros(r0, r0+nr, 0, tileColumns(cols)))
	}
	return k
}

// MatrixRule: each matrix (each expert on its own) ends with round(s*n)
// zeros.
type MatrixRule struct{}

// String implements Rule.
func (MatrixRule) String() string { return "each matrix ends with round(s*n) zeros" }

// Kills implements Rule.
func (MatrixRule) Kills(rows, cols int, s float64, zeros func(r0, r1, c0, c1 int) int) uint64 {
	return lose(int(math.Round(s*float64(rows)*float64(cols))), zeros(0, rows, 0, tileColumns(cols)))
}
