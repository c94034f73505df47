package obs

import (
	"errors"
	"fmt"
	"math"
)

// ErrNotPositiveDefinite is returned (wrapped) when a Hessian stays
// indefinite after every damping retry.
var ErrNotPositiveDefinite = errors.New("obs: Hessian not positive definite")

// MaxDampRetries is how many times NewFactor multiplies the damping by
// DampGrowth before it gives up on a Hessian that is not positive definite.
const MaxDampRetries = 8

// DampGrowth is the factor by which each retry raises the damping.
const DampGrowth = 10

// Factor is the inverse Hessian of one layer input in the form the OBS
// updates need: U, the upper Cholesky factor of (H + lambda I)^-1.
type Factor struct {
	// N is the width of the input (the weight matrix's column count).
	N int
	// U is N x N, row-major; only the upper triangle (j >= i) is set.
	U []float64
	// Dead counts inputs whose Gram diagonal is zero (never active in the
	// calibration); their H diagonal is set to 1 before damping.
	Dead int
	// Damp is the relative damping actually used: lambda = Damp * mean(diag H).
	Damp float64
	// Lambda is the absolute damping added to H's diagonal.
	Lambda float64
	// Retries counts how often the damping was raised by DampGrowth
	// because the damped H was not positive definite.
	Retries int
}

// NewFactor builds the Factor of the Hessian H = 2 G / tokens of a
// layer whose input Gram matrix is gram (n x n, row-major, symmetric; only
// the lower triangle is read), damped by damp * mean(diag H). A damped H
// that is not positive definite gets DampGrowth times more damping, up to
// MaxDampRetries times; the Factor says what was used.
func NewFactor(gram []float64, n int, tokens float64, damp float64) (*Factor, error) {
	if n <= 0 || len(gram) != n*n {
		return nil, fmt.Errorf("obs: Gram of %d values is not %d x %d", len(gram), n, n)
	}
	if !(tokens > 0) || math.IsInf(tokens, 0) {
		return nil, fmt.Errorf("obs: token count %v is not positive", tokens)
	}
	if !(damp >= 0) || math.IsInf(damp, 0) {
		return nil, fmt.Errorf("obs: damping %v is not a finite non-negative number", damp)
	}
	scale := 2 / tokens
	f := &Factor{N: n, Damp: damp}
	var trace float64
	for i := 0; i < n; i++ {
		for j := 0; j <= i; j++ {
			if v := gram[i*n+j] * scale; math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("obs: Gram element (%d, %d) is %v", i, j, gram[i*n+j])
			}
		}
		d := gram[i*n+i] * scale
		if d == 0 {
			d = 1
			f.Dead++
		}
		trace += d
	}
	mean := trace / float64(n)
	// The factor is built in place in its own n x n matrix, read straight
	// from the Gram: no scaled copy of H, which for a wide input (5632
	// columns: 254 MB) would be a third n x n matrix alive beside the
	// Gram and the factor.
	work := make([]float64, n*n)
	for try := 0; ; try++ {
		f.Lambda = f.Damp * mean
		if f.Lambda == 0 && try > 0 {
			// A zero damping cannot grow by multiplication.
			f.Damp, f.Lambda = 1e-8, 1e-8*mean
		}
		if upperInverseFactor(work, gram, n, scale, f.Lambda) {
			f.U = work
			return f, nil
		}
		if try == MaxDampRetries {
			return nil, fmt.Errorf("%w after %d damping retries (last relative damping %g)", ErrNotPositiveDefinite, try, f.Damp)
		}
		f.Retries++
		f.Damp *= DampGrowth
	}
}

// upperInverseFactor sets u to the upper Cholesky factor U of
// (H + lambda I)^-1, H = scale * G with G's lower triangle in gram (a
// zero diagonal element of H, an input never active, read as 1). It
// reports false when H + lambda I is not positive definite.
//
// With J the order-reversing permutation and J (H + lambda I) J = M M^T
// (M lower triangular), H + lambda I = (J M J)(J M J)^T, so
// (H + lambda I)^-1 = (J M^-1 J)^T (J M^-1 J) and U = J M^-1 J is upper
// triangular with a positive diagonal: one Cholesky factorisation and one
// triangular inversion.
func upperInverseFactor(u, gram []float64, n int, scale, lambda float64) bool {
	// m = J (H + lambda I) J, lower triangle: m[i][j] = H[n-1-j][n-1-i]
	// for j <= i (H's lower triangle, read through its symmetry).
	m := u
	for i := 0; i < n; i++ {
		for j := 0; j < i; j++ {
			m[i*n+j] = gram[(n-1-j)*n+(n-1-i)] * scale
		}
		d := gram[(n-1-i)*n+(n-1-i)] * scale
		if d == 0 {
			d = 1
		}
		m[i*n+i] = d + lambda
		clear(m[i*n+i+1 : i*n+n])
	}
	if !cholesky(m, n) {
		return false
	}
	invertLower(m, n)
	// U = J M^-1 J: u[i][j] = minv[n-1-i][n-1-j]. Reverse in place: the
	// element (i, j) swaps with (n-1-i, n-1-j), which maps the lower
	// triangle onto the upper one.
	for a, b := 0, n*n-1; a < b; a, b = a+1, b-1 {
		m[a], m[b] = m[b], m[a]
	}
	return true
}

// cholesky factors the symmetric matrix whose lower triangle a holds
// (n x n, row-major) into L L^T in place (L in the lower triangle). It
// reports false when the matrix is not positive definite (a pivot <= 0 or
// not a number).
//
// It works in tiles of cholTile rows (left-looking): for each row tile I,
// every finished tile J to its left first takes A[I,J] -= L[I,:j0]
// L[J,:j0]^T (subTiles: a product whose operands stay in the core's cache,
// cholDepth columns at a time, in register blocks of 4 x 2), then the
// short triangular solve within J; the diagonal tile is then factored the
// same way. The triangle is read about n/cholTile times instead of n/4
// times as a row-by-row factorisation reads it.
func cholesky(a []float64, n int) bool {
	for i0 := 0; i0 < n; i0 += cholTile {
		i1 := min(i0+cholTile, n)
		for j0 := 0; j0 < i0; j0 += cholTile {
			j1 := j0 + cholTile
			subTiles(a, n, i0, i1, j0, j1, j0, false)
			for i := i0; i < i1; i++ {
				ri := a[i*n : i*n+j1]
				for j := j0; j < j1; j++ {
					ri[j] = (ri[j] - dot(ri[j0:j], a[j*n+j0:j*n+j])) / a[j*n+j]
				}
			}
		}
		subTiles(a, n, i0, i1, i0, i1, i0, true)
		for i := i0; i < i1; i++ {
			if !choleskyRowFrom(a, n, i, i0) {
				return false
			}
		}
	}
	return true
}

// Tiles of the blocked Cholesky factorisation: row tiles of cholTile rows,
// inner products cholDepth columns at a time (2 x 64 x 512 doubles, 512 KB,
// stay in a core's cache).
const (
	cholTile  = 64
	cholDepth = 512
)

// subTiles subtracts from A[i][j], for i in [i0, i1) and j in [j0, j1)
// (j <= i only when lower), the inner product of rows i and j over the
// columns [0, k1).
func subTiles(a []float64, n, i0, i1, j0, j1, k1 int, lower bool) {
	for k0 := 0; k0 < k1; k0 += cholDepth {
		ke := min(k0+cholDepth, k1)
		i := i0
		for ; i+4 <= i1; i += 4 {
			r0, r1, r2, r3 := a[i*n+k0:i*n+ke], a[(i+1)*n+k0:(i+1)*n+ke], a[(i+2)*n+k0:(i+2)*n+ke], a[(i+3)*n+k0:(i+3)*n+ke]
			jend := j1
			if lower {
				jend = min(j1, i+4)
			}
			j := j0
			for ; j+2 <= jend; j += 2 {
				s := dot4x2(r0, r1, r2, r3, a[j*n+k0:j*n+ke], a[(j+1)*n+k0:(j+1)*n+ke])
				for d := range 4 {
					if !lower || j <= i+d {
						a[(i+d)*n+j] -= s[2*d]
					}
					if !lower || j+1 <= i+d {
						a[(i+d)*n+j+1] -= s[2*d+1]
					}
				}
			}
			for ; j < jend; j++ {
				rj := a[j*n+k0 : j*n+ke]
				for d, r := range [4][]float64{r0, r1, r2, r3} {
					if !lower || j <= i+d {
						a[(i+d)*n+j] -= dot(r, rj)
					}
				}
			}
		}
		for ; i < i1; i++ {
			ri := a[i*n+k0 : i*n+ke]
			jend := j1
			if lower {
				jend = min(j1, i+1)
			}
			for j := j0; j < jend; j++ {
				a[i*n+j] -= dot(ri, a[j*n+k0:j*n+ke])
			}
		}
	}
}

// dot4x2 returns the eight inner products of x0..x3 with y0 and y1 (each
// over len(x0) elements), as [x0.y0, x0.y1, x1.y0, ..., x3.y1].
func dot4x2(x0, x1, x2, x3, y0, y1 []float64) [8]float64 {
	n := len(x0)
	x1, x2, x3, y0, y1 = x1[:n], x2[:n], x3[:n], y0[:n], y1[:n]
	var s00, s01, s10, s11, s20, s21, s30, s31 float64
	for k := range n {
		a, b := y0[k], y1[k]
		v0, v1, v2, v3 := x0[k], x1[k], x2[k], x3[k]
		s00 += v0 * a
		s01 += v0 * b
		s10 += v1 * a
		s11 += v1 * b
		s20 += v2 * a
		s21 += v2 * b
		s30 += v3 * a
		s31 += v3 * b
	}
	return [8]float64{s00, s01, s10, s11, s20, s21, s30, s31}
}

// choleskyRowFrom finishes row i of the Cholesky factor over the columns
// [j0, i], whose entries already lack the products of the columns before
// j0; rows before i are final.
func choleskyRowFrom(a []float64, n, i, j0 int) bool {
	ri := a[i*n : i*n+i+1]
	for j := j0; j <= i; j++ {
		s := ri[j] - dot(ri[j0:j], a[j*n+j0:j*n+j])
		if j < i {
			ri[j] = s / a[j*n+j]
			continue
		}
		if !(s > 0) {
			return false
		}
		ri[i] = math.Sqrt(s)
	}
	return true
}

// invertLower replaces the lower-triangular L in a (n x n, row-major) by
// L^-1, row by row: row i of L^-1 is (e_i - sum_{k<i} L[i][k] row k of
// L^-1) / L[i][i]. invGroup rows are built at a time, so that each
// finished row k is read from memory once for all of them (and from the
// core's cache for each four); every element takes the same operations in
// the same order as row by row.
func invertLower(a []float64, n int) {
	work := make([]float64, invGroup*n)
	i0 := 0
	for ; i0+invGroup <= n; i0 += invGroup {
		var rs [invGroup][]float64
		var ls [invGroup][]float64
		for d := range invGroup {
			rs[d] = work[d*n : d*n+i0+d+1]
			clear(rs[d])
			ls[d] = a[(i0+d)*n:]
		}
		for k := 0; k < i0; k++ {
			mk := a[k*n : k*n+k+1]
			for d := 0; d < invGroup; d += 4 {
				axpy4(rs[d], rs[d+1], rs[d+2], rs[d+3], -ls[d][k], -ls[d+1][k], -ls[d+2][k], -ls[d+3][k], mk)
			}
		}
		// The group's rows also depend on each other: finish them in order.
		for d := range invGroup {
			finishInverseRow(a, n, i0+d, i0, rs[d])
		}
	}
	for i := i0; i < n; i++ {
		r := work[:i+1]
		clear(r)
		finishInverseRow(a, n, i, 0, r)
	}
}

// invGroup is how many rows of L^-1 invertLower builds at a time (a
// multiple of 4).
const invGroup = 16

// finishInverseRow finishes row i of L^-1 in r (which holds the terms of
// the rows before k0) with the rows k0..i-1, already final, and stores it
// over L's row i.
func finishInverseRow(a []float64, n, i, k0 int, r []float64) {
	li := a[i*n : i*n+i+1]
	for k := k0; k < i; k++ {
		axpy(r[:k+1], -li[k], a[k*n:k*n+k+1])
	}
	r[i] += 1
	inv := 1 / li[i]
	for j := range r {
		li[j] = r[j] * inv
	}
}

// dot is sum x[i]*y[i] over len(x), four partial sums.
func dot(x, y []float64) float64 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * y[i]
		s1 += x[i+1] * y[i+1]
		s2 += x[i+2] * y[i+2]
		s3 += x[i+3] * y[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// axpy adds a*x to y (len(y) elements).
func axpy(y []float64, a float64, x []float64) {
	x = x[:len(y)]
	for i := range y {
		y[i] += a * x[i]
	}
}

// dot4 is the four dot products of x0..x3 with y (len(x0) elements), each
// over two partial sums (even and odd elements).
func dot4(x0, x1, x2, x3, y []float64) (float64, float64, float64, float64) {
	n := len(x0)
	y, x1, x2, x3 = y[:n], x1[:n], x2[:n], x3[:n]
	var a0, a1, b0, b1, c0, c1, d0, d1 float64
	i := 0
	for ; i+2 <= n; i += 2 {
		y0, y1 := y[i], y[i+1]
		a0 += x0[i] * y0
		a1 += x0[i+1] * y1
		b0 += x1[i] * y0
		b1 += x1[i+1] * y1
		c0 += x2[i] * y0
		c1 += x2[i+1] * y1
		d0 += x3[i] * y0
		d1 += x3[i+1] * y1
	}
	if i < n {
		a0 += x0[i] * y[i]
		b0 += x1[i] * y[i]
		c0 += x2[i] * y[i]
		d0 += x3[i] * y[i]
	}
	return a0 + a1, b0 + b1, c0 + c1, d0 + d1
}

// axpy4 adds a0*x to y0, ..., a3*x to y3 over len(x) elements.
func axpy4(y0, y1, y2, y3 []float64, a0, a1, a2, a3 float64, x []float64) {
	n := len(x)
	y0, y1, y2, y3 = y0[:n], y1[:n], y2[:n], y3[:n]
	for i, v := range x {
		y0[i] += a0 * v
		y1[i] += a1 * v
		y2[i] += a2 * v
		y3[i] += a3 * v
	}
}
