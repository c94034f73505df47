package kernel

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Mode selects the kill rule applied to the final conductivities D_T.
type Mode int

const (
	// Natural kills every non-zero weight with D_T < Theta * mean(D_T): the
	// mould decides how much of each tile dies. An alive rule keeps every row
	// and column of the tile with at least one surviving weight.
	Natural Mode = iota
	// Sparsity makes each tile end with exactly round(Sparsity * n) zero
	// weights (n = Rows*Cols): weights that are already zero count first, the
	// rest are the non-zero weights with the smallest D_T, ties broken by
	// row-major index. The alive rule does not apply.
	Sparsity
)

// String returns "natural" or "sparsity".
func (m Mode) String() string {
	switch m {
	case Natural:
		return "natural"
	case Sparsity:
		return "sparsity"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// Params are the constants of the Physarium dynamics and the kill rule.
// The zero value is not valid; start from DefaultParams.
type Params struct {
	// G is the exponent of the response f(q) = q^G / (1 + q^G). It must lie in
	// [1, 4) and be a multiple of 1/256 (an integer plus a sum of powers of
	// two down to 2^-8), so that q^G needs only multiplies and square roots.
	G float32
	// Steps is T, the number of flow/adapt steps (>= 1).
	Steps int
	// CGIters is K, the number of preconditioned conjugate-gradient iterations
	// per step (>= 1), warm started from the previous step.
	CGIters int
	// H is the adaptation rate h in (0, 1]: D <- D + h (2 f(q) - D).
	H float32
	// Theta is the natural-mode threshold as a fraction of mean(D_T), in (0, 2).
	Theta float32
	// Mode is the kill rule.
	Mode Mode
	// Sparsity is the target fraction of zero weights per tile in Sparsity
	// mode, in [0, 1]. Ignored in Natural mode.
	Sparsity float64
}

// Calibrated defaults; see calibrate_test.go for the procedure and the table.
const (
	defaultG       = 1.6875
	defaultSteps   = 8
	defaultCGIters = 4
	defaultH       = 0.5
	defaultTheta   = 0.3
)

// DefaultParams returns the calibrated natural-mode constants.
func DefaultParams() Params {
	return Params{
		G:       defaultG,
		Steps:   defaultSteps,
		CGIters: defaultCGIters,
		H:       defaultH,
		Theta:   defaultTheta,
		Mode:    Natural,
	}
}

// String renders the parameters as space-separated key=value pairs, e.g.
// "g=1.6875 T=8 K=4 h=0.5 theta=0.3"; in Sparsity mode " sparsity=0.5" is
// appended. It is the value of the GGUF key physarium.params.
func (p Params) String() string {
	f32 := func(x float32) string { return strconv.FormatFloat(float64(x), 'g', -1, 32) }
	var b strings.Builder
	fmt.Fprintf(&b, "g=%s T=%d K=%d h=%s theta=%s", f32(p.G), p.Steps, p.CGIters, f32(p.H), f32(p.Theta))
	if p.Mode == Sparsity {
		fmt.Fprintf(&b, " sparsity=%s", strconv.FormatFloat(p.Sparsity, 'g', -1, 64))
	}
	return b.String()
}

// Limits on the parameters, to bound the work of one tile.
const (
	maxSteps   = 1000
	maxCGIters = 1000
	gFracBits  = 8
)

// Validate reports whether p is usable.
func (p Params) Validate() error {
	if _, _, _, err := splitG(p.G); err != nil {
		return err
	}
	if p.Steps < 1 || p.Steps > maxSteps {
		return fmt.Errorf("kernel: steps T=%d out of range [1, %d]", p.Steps, maxSteps)
	}
	if p.CGIters < 1 || p.CGIters > maxCGIters {
		return fmt.Errorf("kernel: CG iterations K=%d out of range [1, %d]", p.CGIters, maxCGIters)
	}
	if !(p.H > 0 && p.H <= 1) {
		return fmt.Errorf("kernel: h=%v out of range (0, 1]", p.H)
	}
	if !(p.Theta > 0 && p.Theta < 2) {
		return fmt.Errorf("kernel: theta=%v out of range (0, 2)", p.Theta)
	}
	switch p.Mode {
	case Natural:
	case Sparsity:
		if !(p.Sparsity >= 0 && p.Sparsity <= 1) {
			return fmt.Errorf("kernel: sparsity=%v out of range [0, 1]", p.Sparsity)
		}
	default:
		return fmt.Errorf("kernel: unknown mode %d", int(p.Mode))
	}
	return nil
}

// splitG decomposes g = whole + sum_{k=1..top} bit_k 2^-k, bit_k = bits>>(k-1)&1.
func splitG(g float32) (whole int32, bits uint32, top int32, err error) {
	if !(g >= 1 && g < 4) {
		return 0, 0, 0, fmt.Errorf("kernel: g=%v out of range [1, 4)", g)
	}
	scaled := float64(g) * (1 << gFracBits)
	if scaled != math.Trunc(scaled) {
		return 0, 0, 0, errors.New("kernel: g=" + strconv.FormatFloat(float64(g), 'g', -1, 32) +
			" is not a multiple of 1/256 (an integer plus a sum of powers of two down to 2^-8)")
	}
	s := uint32(scaled)
	whole = int32(s >> gFracBits)
	frac := s & (1<<gFracBits - 1)
	for k := int32(1); k <= gFracBits; k++ {
		if frac>>(gFracBits-k)&1 != 0 {
			bits |= 1 << (k - 1)
			top = k
		}
	}
	return whole, bits, top, nil
}
