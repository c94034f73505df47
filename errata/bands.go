package errata

import (
	"iter"
	"math"
)

// Bands yields the bands of a matrix of rows rows: the first row and the
// row count of each run of TileSize rows, the last one cut short. prune
// decides and audit replays band by band in this order.
func Bands(rows int) iter.Seq2[int, int] {
	return func(yield func(row0, n int) bool) {
		for r0 := 0; r0 < rows; r0 += TileSize {
			if !yield(r0, min(TileSize, rows-r0)) {
				return
			}
		}
	}
}

// BandsPerMatrix is the number of bands of a matrix of rows rows.
func BandsPerMatrix(rows int) int { return (rows + TileSize - 1) / TileSize }

// Tiled returns the weights of a tensor of the given shape that the tiling
// covers: every matrix (ne[0] x ne[1]; each of the ne[2]*ne[3] experts
// separately) cut into non-overlapping TileSize x TileSize tiles, the last
// row and column of tiles cut short. A tensor with fewer than two
// dimensions is not tiled (0).
func Tiled(shape []uint64) uint64 {
	if len(shape) < 2 {
		return 0
	}
	side := func(n uint64) uint64 { // the sum of the tile extents along one axis
		var s uint64
		for lo := uint64(0); lo < n; lo += TileSize {
			s += min(TileSize, n-lo)
		}
		return s
	}
	mats := uint64(1)
	for _, n := range shape[2:] {
		mats *= n
	}
	return side(shape[0]) * side(shape[1]) * mats
}

// RowQuota is the number of zeros row o (0-based within its matrix) of
// rows of n weights must end with at sparsity s: round(s*(o+1)*n) -
// round(s*o*n), so that every row gets floor or ceil of s*n and each matrix
// ends with exactly round(s*rows*n) zeros, like the per-tile and per-tensor
// rules (when no row holds more zeros than its quota).
func RowQuota(o, n int, s float64) int {
	return int(math.Round(s*float64(o+1)*float64(n))) - int(math.Round(s*float64(o)*float64(n)))
}

// BandQuota is the number of zeros the band of rows [o0, o0+rows) (row
// indices within the matrix) of rows of n weights must end with at
// sparsity s under RankFlowShare: the sum of the rows' RowQuota, which
// telescopes to round(s*(o0+rows)*n) - round(s*o0*n).
func BandQuota(o0, rows, n int, s float64) int {
	return int(math.Round(s*float64(o0+rows)*float64(n))) - int(math.Round(s*float64(o0)*float64(n)))
}

// TileQuota is the number of zeros a tile of n weights ends with at
// sparsity s in the kernel's sparsity mode: round(s*n).
func TileQuota(n int, s float64) int { return int(math.Round(s * float64(n))) }
