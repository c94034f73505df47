// Package uarch measures what one core of the machine does per cycle: the
// clock, and the throughput of the vector instructions the kernel's paths
// are made of (fused multiply-add, multiply, add, square root, divide and
// the approximate reciprocal square root, 256 and 512 bits wide). Each
// figure comes from a loop of one instruction kind in twelve independent
// dependency chains, in inline assembly, timed by the thread's own CPU
// clock; docs/KERNEL.md quotes them.
package uarch

import "errors"

// Op is one measured instruction loop.
type Op int

// The loops. Clock is a chain of dependent one-cycle integer adds; the
// others are independent chains of one vector instruction kind, or of two
// kinds interleaved.
const (
	Clock Op = iota
	FMAYmm
	FMAZmm
	MulYmm
	MulZmm
	AddYmm
	AddZmm
	SqrtYmm
	SqrtZmm
	DivYmm
	DivZmm
	Rsqrt14Ymm
	Rsqrt14Zmm
	SqrtDivZmm // 12 vsqrtps and 12 vdivps, zmm, a round
	SqrtFMAYmm // 6 vsqrtps and 24 vfmadd231ps, ymm, a round
	numOps
)

// opInfo is what a loop runs: its name, how many instructions of each kind
// a round holds, and whether it needs AVX-512.
type opInfo struct {
	name     string
	perRound int
	avx512   bool
}

var ops = [numOps]opInfo{
	Clock:      {"add (dependent, one cycle each)", 12, false},
	FMAYmm:     {"vfmadd231ps ymm", 12, false},
	FMAZmm:     {"vfmadd231ps zmm", 12, true},
	MulYmm:     {"vmulps ymm", 12, false},
	MulZmm:     {"vmulps zmm", 12, true},
	AddYmm:     {"vaddps ymm", 12, false},
	AddZmm:     {"vaddps zmm", 12, true},
	SqrtYmm:    {"vsqrtps ymm", 12, false},
	SqrtZmm:    {"vsqrtps zmm", 12, true},
	DivYmm:     {"vdivps ymm", 12, false},
	DivZmm:     {"vdivps zmm", 12, true},
	Rsqrt14Ymm: {"vrsqrt14ps ymm", 12, true},
	Rsqrt14Zmm: {"vrsqrt14ps zmm", 12, true},
	SqrtDivZmm: {"12 vsqrtps zmm + 12 vdivps zmm", 1, true},
	SqrtFMAYmm: {"6 vsqrtps ymm + 24 vfmadd231ps ymm", 1, false},
}

// String is the loop's instruction, as the tables name it.
func (o Op) String() string { return ops[o].name }

// Ops lists every loop, in table order.
func Ops() []Op {
	l := make([]Op, numOps)
	for i := range l {
		l[i] = Op(i)
	}
	return l
}

// ErrUnavailable is returned for a loop this machine or build cannot run.
var ErrUnavailable = errors.New("uarch: not available on this machine or build")

// minSeconds is how long one timed run lasts at least.
const minSeconds = 0.05

// Hz measures the core clock: rounds of twelve dependent one-cycle adds,
// the best of runs timed by the thread's CPU clock.
func Hz(runs int) (float64, error) {
	n, s, err := best(Clock, runs)
	if err != nil {
		return 0, err
	}
	return float64(n) * 12 / s, nil
}

// Cycles measures loop o at clock hz (from Hz): the cycles per
// instruction, or per round for the interleaved loops, the best of runs.
func Cycles(o Op, hz float64, runs int) (float64, error) {
	n, s, err := best(o, runs)
	if err != nil {
		return 0, err
	}
	return s * hz / float64(n) / float64(ops[o].perRound), nil
}

// best times loop o: n rounds, doubled until a run lasts minSeconds, and
// the least time of runs runs of n rounds.
func best(o Op, runs int) (n int64, s float64, err error) {
	if o < 0 || o >= numOps || !available(o) {
		return 0, 0, ErrUnavailable
	}
	n = 1 << 10
	for {
		s = seconds(o, n)
		if s >= minSeconds || n >= 1<<40 {
			break
		}
		n *= 2
	}
	for range runs - 1 {
		s = min(s, seconds(o, n))
	}
	return n, s, nil
}
