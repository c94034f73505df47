package obs

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sync"
)

// DefaultBlockSize is the column block of the lazy batch updates, as in
// SparseGPT's reference code.
const DefaultBlockSize = 128

// Options says how Prune chooses and applies the mask.
type Options struct {
	// Sparsity is the fraction of weights to remove when neither Mask nor
	// an N:M pattern is given: every column block of all rows loses
	// round(s*rows*end) - round(s*rows*start) weights (start and end its
	// first and past-last column), so the matrix loses exactly
	// round(s*rows*cols).
	Sparsity float64
	// N and M, when M > 0, ask for an N:M pattern: in every group of M
	// consecutive columns of a row, exactly N weights are removed, chosen
	// when the group's first column is reached; a row's last group, when
	// M does not divide the column count, has r < M columns and loses
	// GroupQuota(N, M, r). M must divide the block size.
	N, M int
	// Mask, when not nil, fixes the removed weights (true = removed;
	// rows*cols, row-major) and Prune only reconstructs the survivors.
	Mask []bool
	// Zeros, when not nil (rows*cols), marks weights that stay removed
	// whatever their score, e.g. the original's zeros, which the OBS
	// update must not revive: a block (or an N:M group) takes them
	// first, and they count towards its quota.
	Zeros []bool
	// BlockSize is the column block of the lazy batch updates
	// (DefaultBlockSize when 0).
	BlockSize int
	// Workers is the number of goroutines over rows (1 when <= 0). The
	// result does not depend on it.
	Workers int
}

// Result says what Prune did.
type Result struct {
	// Mask is the removed weights (true), rows*cols, row-major.
	Mask []bool
	// Removed counts the true entries of Mask.
	Removed int
}

// Prune removes weights of w (rows x cols, row-major, ggml's orientation:
// one row per output, f.N columns) and updates the survivors so that the
// layer's output on the calibration inputs behind f changes as little as
// the sequential OBS rule allows. Removed weights end as exactly 0. With
// opt.Mask the removed set is given; otherwise it is chosen as SparseGPT
// chooses it, block by block, from w^2 / U_jj^2 on the weights as they
// stand when the block (or, for N:M, the group) is reached.
func Prune(w []float64, rows int, f *Factor, opt Options) (Result, error) {
	cols := f.N
	if rows <= 0 || len(w) != rows*cols {
		return Result{}, fmt.Errorf("obs: %d weights are not %d rows of %d", len(w), rows, cols)
	}
	bs := opt.BlockSize
	if bs == 0 {
		bs = DefaultBlockSize
	}
	if bs < 1 {
		return Result{}, fmt.Errorf("obs: block size %d", bs)
	}
	switch {
	case opt.Mask != nil:
		if len(opt.Mask) != len(w) {
			return Result{}, fmt.Errorf("obs: mask of %d entries for %d weights", len(opt.Mask), len(w))
		}
	case opt.M > 0:
		if opt.N < 0 || opt.N > opt.M || bs%opt.M != 0 {
			return Result{}, fmt.Errorf("obs: pattern %d:%d needs N <= M and M dividing the block size %d", opt.N, opt.M, bs)
		}
	default:
		if !(opt.Sparsity >= 0 && opt.Sparsity <= 1) {
			return Result{}, fmt.Errorf("obs: sparsity %v is not in [0, 1]", opt.Sparsity)
		}
	}
	if opt.Zeros != nil && len(opt.Zeros) != len(w) {
		return Result{}, fmt.Errorf("obs: %d zero marks for %d weights", len(opt.Zeros), len(w))
	}
	for i, v := range w {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return Result{}, fmt.Errorf("obs: weight %d (row %d, column %d) is %v", i, i/cols, i%cols, v)
		}
	}
	mask := opt.Mask
	if mask == nil {
		mask = make([]bool, len(w))
	} else {
		mask = slices.Clone(mask)
	}
	s := solver{w: w, rows: rows, cols: cols, u: f.U, mask: mask, opt: opt, bs: bs, errs: make([]float64, rows*bs)}
	s.run(max(1, opt.Workers))
	res := Result{Mask: mask}
	for _, m := range mask {
		if m {
			res.Removed++
		}
	}
	return res, nil
}

// solver holds one Prune call's state.
type solver struct {
	w          []float64
	rows, cols int
	u          []float64
	mask       []bool
	opt        Options
	bs         int
	// errs holds each row's errors of the current block (rows x bs),
	// for the lazy batch update.
	errs []float64
}

// run visits the column blocks in order; within a block the rows are
// independent once the block's mask is known, so they are shared among
// the workers.
func (s *solver) run(workers int) {
	for c0 := 0; c0 < s.cols; c0 += s.bs {
		c1 := min(c0+s.bs, s.cols)
		if s.opt.Mask == nil && s.opt.M == 0 {
			s.chooseBlock(c0, c1)
		}
		s.parallelRows(workers, func(k int) { s.updateRows(k, workers, c0, c1) })
	}
}

// parallelRows calls fn(k) for k in [0, workers) on workers goroutines;
// worker k owns rows k, k+workers, ...
func (s *solver) parallelRows(workers int, fn func(k int)) {
	workers = min(workers, s.rows)
	var wg sync.WaitGroup
	for k := 0; k < workers; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			fn(k)
		}(k)
	}
	wg.Wait()
}

// tailChunk is the number of columns right of a block that the lazy
// batch update takes at a time: bs x tailChunk values of U (512 KB for a
// block of 128) stay in the core's cache while every row uses them.
const tailChunk = 512

// updateRows applies the OBS rule to worker k's rows over the columns
// [c0, c1) (updateRow), then the lazy batch update of the columns right
// of the block, a chunk of columns at a time for all its rows, so that
// U's slab is read from memory once per chunk instead of once per row.
// Each weight takes the same operations in the same order as row by
// row.
func (s *solver) updateRows(k, workers, c0, c1 int) {
	for r := k; r < s.rows; r += workers {
		s.updateRow(r, c0, c1, s.errs[r*s.bs:(r+1)*s.bs])
	}
	for t0 := c1; t0 < s.cols; t0 += tailChunk {
		t1 := min(t0+tailChunk, s.cols)
		for r := k; r < s.rows; r += workers {
			s.updateTail(r, c0, t0, t1, s.errs[r*s.bs:r*s.bs+c1-c0])
		}
	}
}

// chooseBlock marks the block's quota of weights with the smallest
// w^2 / U_jj^2 over all rows (ties by row, then column).
func (s *solver) chooseBlock(c0, c1 int) {
	total := float64(s.rows)
	quota := int(math.Round(s.opt.Sparsity*total*float64(c1))) - int(math.Round(s.opt.Sparsity*total*float64(c0)))
	if quota <= 0 && s.opt.Zeros == nil {
		return
	}
	width := c1 - c0
	type cand struct {
		score float64
		at    int
	}
	cands := make([]cand, 0, s.rows*width)
	for r := 0; r < s.rows; r++ {
		for j := c0; j < c1; j++ {
			cands = append(cands, cand{s.score(r*s.cols + j), r*s.cols + j})
		}
	}
	slices.SortFunc(cands, func(a, b cand) int {
		if c := cmp.Compare(a.score, b.score); c != 0 {
			return c
		}
		return cmp.Compare(a.at, b.at)
	})
	for k, c := range cands {
		if k < quota || c.score < 0 {
			s.mask[c.at] = true
		}
	}
}

// GroupQuota is the number of weights an N:M pattern removes from a group
// of size weights: N for a whole group (size M), round(N*size/M) for a
// row's shorter last group.
func GroupQuota(n, m, size int) int {
	if size == m {
		return n
	}
	return int(math.Round(float64(n) * float64(size) / float64(m)))
}

// score is the saliency of weight i (row-major) as it stands: -1 for a
// weight Options.Zeros pins, so that it is chosen first.
func (s *solver) score(i int) float64 {
	if s.opt.Zeros != nil && s.opt.Zeros[i] {
		return -1
	}
	j := i % s.cols
	return score(s.w[i], s.u[j*s.cols+j])
}

// score is SparseGPT's saliency of removing weight v of a column whose
// inverse-Hessian factor diagonal is d: v^2 / d^2.
func score(v, d float64) float64 { return v * v / (d * d) }

// chooseGroup marks, in row r, the N weights of the M columns from c with
// the smallest score (ties by column).
func (s *solver) chooseGroup(r, c int) {
	var idx [64]int
	group := idx[:0]
	if s.opt.M > len(idx) {
		group = make([]int, 0, s.opt.M)
	}
	end := min(c+s.opt.M, s.cols)
	n := GroupQuota(s.opt.N, s.opt.M, end-c)
	for j := c; j < end; j++ {
		group = append(group, j)
	}
	slices.SortStableFunc(group, func(a, b int) int {
		return cmp.Compare(s.score(r*s.cols+a), s.score(r*s.cols+b))
	})
	for k, j := range group {
		if k < n || s.opt.Zeros != nil && s.opt.Zeros[r*s.cols+j] {
			s.mask[r*s.cols+j] = true
		}
	}
}

// updateRow applies the OBS rule to row r over the columns [c0, c1): each
// column in turn is set to its final value (0 where masked), and its error,
// divided by U_jj, is taken off the block's later columns along U's row j
// and kept in errs for the lazy batch update (updateTail).
func (s *solver) updateRow(r, c0, c1 int, errs []float64) {
	n := s.cols
	row := s.w[r*n : r*n+n]
	mrow := s.mask[r*n : r*n+n]
	errs = errs[:c1-c0]
	for j := c0; j < c1; j++ {
		if s.opt.M > 0 && s.opt.Mask == nil && (j-c0)%s.opt.M == 0 {
			s.chooseGroup(r, j)
		}
		e := 0.0
		if mrow[j] {
			uj := s.u[j*n : j*n+n]
			e = row[j] / uj[j]
			row[j] = 0
			axpy(row[j+1:c1], -e, uj[j+1:c1])
		}
		errs[j-c0] = e
	}
}

// updateTail is the lazy batch update of row r's columns [t0, t1), right
// of the block [c0, c1) whose errors are errs: each column takes the
// errors along U's rows, four at a time.
func (s *solver) updateTail(r, c0, t0, t1 int, errs []float64) {
	n := s.cols
	tail := s.w[r*n+t0 : r*n+t1]
	k := 0
	for ; k+4 <= len(errs); k += 4 {
		e0, e1, e2, e3 := errs[k], errs[k+1], errs[k+2], errs[k+3]
		if e0 == 0 && e1 == 0 && e2 == 0 && e3 == 0 {
			continue
		}
		j := c0 + k
		u0 := s.u[j*n+t0 : j*n+t1]
		u1 := s.u[(j+1)*n+t0 : (j+1)*n+t1]
		u2 := s.u[(j+2)*n+t0 : (j+2)*n+t1]
		u3 := s.u[(j+3)*n+t0 : (j+3)*n+t1]
		for i := range tail {
			tail[i] -= e0*u0[i] + e1*u1[i] + e2*u2[i] + e3*u3[i]
		}
	}
	for ; k < len(errs); k++ {
		if e := errs[k]; e != 0 {
			j := c0 + k
			axpy(tail, -e, s.u[j*n+t0:j*n+t1])
		}
	}
}

// OutputError is the change of the layer's output on the calibration
// inputs, sum_o (w_o - v_o)^T G (w_o - v_o), for weights w replaced by v
// (both rows x n, row-major) and the undamped Gram G (n x n, row-major,
// lower triangle read). Rows are taken four at a time, so that each row
// of G is read from memory once for four of them.
func OutputError(w, v []float64, rows int, gram []float64, n int) float64 {
	d := make([]float64, 4*n)
	var total float64
	r := 0
	for ; r+4 <= rows; r += 4 {
		for k := range 4 * n {
			d[k] = w[r*n+k] - v[r*n+k]
		}
		d0, d1, d2, d3 := d[:n], d[n:2*n], d[2*n:3*n], d[3*n:]
		var t [4]float64
		for i := 0; i < n; i++ {
			if d0[i] == 0 && d1[i] == 0 && d2[i] == 0 && d3[i] == 0 {
				continue
			}
			// Lower triangle row i gives G[i][0..i]; the full quadratic is
			// sum_i d_i (G_ii d_i + 2 sum_{j<i} G_ij d_j).
			gi, gii := gram[i*n:i*n+i], gram[i*n+i]
			s0, s1, s2, s3 := dot4(d0[:i], d1[:i], d2[:i], d3[:i], gi)
			t[0] += d0[i] * (gii*d0[i] + 2*s0)
			t[1] += d1[i] * (gii*d1[i] + 2*s1)
			t[2] += d2[i] * (gii*d2[i] + 2*s2)
			t[3] += d3[i] * (gii*d3[i] + 2*s3)
		}
		total += (t[0] + t[1]) + (t[2] + t[3])
	}
	for ; r < rows; r++ {
		d0 := d[:n]
		for j := range d0 {
			d0[j] = w[r*n+j] - v[r*n+j]
		}
		for i := 0; i < n; i++ {
			if d0[i] == 0 {
				continue
			}
			gi := gram[i*n : i*n+i]
			total += d0[i] * (gram[i*n+i]*d0[i] + 2*dot(gi, d0[:i]))
		}
	}
	return total
}
