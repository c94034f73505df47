package calibrate

import (
	"math"
	"sync"
	"sync/atomic"

	"github.com/physarium/physarium-gguf/imatrix"
)

// simd selects the AVX2 Gram kernel; see SetSIMD.
var simd atomic.Bool

func init() { simd.Store(haveAVX2) }

// SetSIMD turns the AVX2 Gram kernel on or off (it is on where the CPU has
// AVX2 and the binary was built with cgo) and returns the previous
// setting; both kernels give the same bits. Turning it on where it is
// unavailable leaves it off.
func SetSIMD(on bool) bool { return simd.Swap(on && haveAVX2) }

// gramBlocks runs the chosen kernel.
func gramBlocks(g, rows []float64, n, b0, b1 int) {
	if simd.Load() {
		gramRowsAVX2(g, rows, n, b0, b1)
		return
	}
	gramRows(g, rows, n, b0, b1)
}

// acc accumulates one input's statistics, matrix by matrix.
type acc struct {
	width, mats int
	moments     bool // collect the moments in this pass
	gram        bool // collect the Gram in this pass
	count       []float64
	sum, abs    []float64
	sq          []float64
	sq32        []float32 // sum x^2 in float32, in llama-imatrix's order
	gcount      []float64
	g           []float64 // mats packed lower triangles
}

func newAcc(width, mats int) *acc {
	return &acc{width: width, mats: mats}
}

func (a *acc) startMoments() {
	a.moments = true
	a.count = make([]float64, a.mats)
	a.sum = make([]float64, a.mats*a.width)
	a.abs = make([]float64, a.mats*a.width)
	a.sq = make([]float64, a.mats*a.width)
	a.sq32 = make([]float32, a.mats*a.width)
}

// startGram starts the Gram in g, which must hold mats packed triangles
// (it is cleared; the caller reuses one arena from pass to pass, so the
// heap does not grow by a pass's Grams each pass).
func (a *acc) startGram(g []float64) {
	a.gram = true
	a.gcount = make([]float64, a.mats)
	a.g = g[:a.mats*imatrix.PackedLen(a.width)]
	clear(a.g)
}

func (a *acc) stopGram() { a.gram, a.g, a.gcount = false, nil, nil }

// addMoments adds rows (each width float64 values, already converted) to
// matrix mat's moments.
func (a *acc) addMoments(mat int, rows []float64) {
	n := a.width
	sum, abs, sq := a.sum[mat*n:(mat+1)*n], a.abs[mat*n:(mat+1)*n], a.sq[mat*n:(mat+1)*n]
	sq32 := a.sq32[mat*n : (mat+1)*n]
	for r := 0; r+n <= len(rows); r += n {
		x := rows[r : r+n]
		for j, v := range x {
			sum[j] += v
			abs[j] += math.Abs(v)
			sq[j] += v * v
			f := float32(v)
			sq32[j] += float32(f * f) // rounded before the sum, as llama-imatrix
		}
		a.count[mat]++
	}
}

// addGram adds sum over rows of x x^T to matrix mat's packed lower
// triangle, using up to threads goroutines. Each entry sums the rows in
// their order whatever the split, so the result does not depend on threads.
func (a *acc) addGram(mat int, rows []float64, threads int) {
	n := a.width
	t := len(rows) / n
	if t == 0 {
		return
	}
	a.gcount[mat] += float64(t)
	g := a.g[mat*imatrix.PackedLen(n) : (mat+1)*imatrix.PackedLen(n)]
	// Split the rows of G into blocks of 4 with about equal work
	// (row i costs i+1), handed out in order.
	const blk = 4
	nb := (n + blk - 1) / blk
	if threads < 1 {
		threads = 1
	}
	if threads > nb {
		threads = nb
	}
	// Tokens go in tiles small enough to stay in cache while every row
	// block of G passes over them; tiles are taken in order, so each entry
	// still sums the tokens in their order.
	tile := max(1, (1<<20)/(8*n)) * n
	if tile < len(rows) {
		for lo := 0; lo < len(rows); lo += tile {
			a.addGramTile(g, rows[lo:min(lo+tile, len(rows))], n, nb, threads)
		}
		return
	}
	a.addGramTile(g, rows, n, nb, threads)
}

// addGramTile adds one tile of rows to g, splitting G's row blocks over
// threads goroutines.
func (a *acc) addGramTile(g, rows []float64, n, nb, threads int) {
	const blk = 4
	t := len(rows) / n
	if threads == 1 || n*n*t < 1<<16 {
		gramBlocks(g, rows, n, 0, nb)
		return
	}
	total := float64(n) * float64(n+1) / 2
	var wg sync.WaitGroup
	lo := 0
	for w := range threads {
		// The block at which the cumulative work reaches (w+1)/threads.
		target := total * float64(w+1) / float64(threads)
		hi := int(math.Ceil((math.Sqrt(1+8*target) - 1) / 2 / blk))
		if w == threads-1 || hi > nb {
			hi = nb
		}
		if hi <= lo {
			continue
		}
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			gramBlocks(g, rows, n, lo, hi)
		}(lo, hi)
		lo = hi
	}
	wg.Wait()
}

// gramRows adds the outer products of rows into G's rows of blocks
// [b0, b1) (4 rows each): G[i][j] += x[i]*x[j] for j <= i, token by token.
func gramRows(g, rows []float64, n, b0, b1 int) {
	for b := b0; b < b1; b++ {
		i0 := b * 4
		i1 := min(i0+4, n)
		if i1-i0 == 4 {
			r0 := g[i0*(i0+1)/2 : i0*(i0+1)/2+i0+1]
			r1 := g[(i0+1)*(i0+2)/2 : (i0+1)*(i0+2)/2+i0+2]
			r2 := g[(i0+2)*(i0+3)/2 : (i0+2)*(i0+3)/2+i0+3]
			r3 := g[(i0+3)*(i0+4)/2 : (i0+3)*(i0+4)/2+i0+4]
			for r := 0; r+n <= len(rows); r += n {
				x := rows[r : r+n]
				a0, a1, a2, a3 := x[i0], x[i0+1], x[i0+2], x[i0+3]
				xs := x[:i0+1]
				r0, r1, r2, r3 := r0[:len(xs)], r1[:len(xs)], r2[:len(xs)], r3[:len(xs)]
				for j, v := range xs {
					// float64(...) rounds the product: never fused.
					r0[j] += float64(a0 * v)
					r1[j] += float64(a1 * v)
					r2[j] += float64(a2 * v)
					r3[j] += float64(a3 * v)
				}
				r1r := g[(i0+1)*(i0+2)/2+i0+1 : (i0+1)*(i0+2)/2+i0+2]
				r2r := g[(i0+2)*(i0+3)/2+i0+1 : (i0+2)*(i0+3)/2+i0+3]
				r3r := g[(i0+3)*(i0+4)/2+i0+1 : (i0+3)*(i0+4)/2+i0+4]
				r1r[0] += float64(a1 * a1)
				r2r[0] += float64(a2 * a1)
				r2r[1] += float64(a2 * a2)
				r3r[0] += float64(a3 * a1)
				r3r[1] += float64(a3 * a2)
				r3r[2] += float64(a3 * a3)
			}
			continue
		}
		for i := i0; i < i1; i++ {
			row := g[i*(i+1)/2 : i*(i+1)/2+i+1]
			for r := 0; r+n <= len(rows); r += n {
				x := rows[r : r+n]
				xi := x[i]
				for j := range row {
					row[j] += float64(xi * x[j])
				}
			}
		}
	}
}
