package kernel

import (
	"fmt"
	"math"
	"slices"
)

// The arena is one float32 slice per batch holding every tile's D (rows x cp),
// its supplies b and the shared work area, addressed by offsets so that the
// whole batch can be handed to C in one call. Every region is followed by a
// guard that the tests check.

// guardLen is the length of the sentinel written after every arena region.
const guardLen = 8

var guardBits = math.Float32bits(-1234.5678)

// pad8 rounds x up to a multiple of 8 (the lane width).
func pad8(x int) int { return (x + 7) &^ 7 }

// reserve appends n zeroed floats plus a guard to the arena and returns the
// offset.
func (k *Kernel) reserve(n int) int64 {
	off := k.reserveRaw(n)
	clear(k.arena[off : off+int64(n)])
	return off
}

// reserveRaw is reserve without zeroing the n floats (the caller writes them).
func (k *Kernel) reserveRaw(n int) int64 {
	off := len(k.arena)
	k.arena = slices.Grow(k.arena, n+guardLen)[:off+n+guardLen]
	g := math.Float32frombits(guardBits)
	for i := off + n; i < off+n+guardLen; i++ {
		k.arena[i] = g
	}
	return int64(off)
}

// checkGuards reports whether every guard in the arena is intact (tests).
func (k *Kernel) checkGuards() error {
	check := func(off int64, n int) error {
		for i := int64(n); i < int64(n)+guardLen; i++ {
			if math.Float32bits(k.arena[off+i]) != guardBits {
				return fmt.Errorf("kernel: guard overwritten at arena offset %d", off+i)
			}
		}
		return nil
	}
	if len(k.jobs) == 0 {
		return nil
	}
	if err := check(k.jobs[0].Work, workLen); err != nil {
		return err
	}
	for _, j := range k.jobs {
		for _, r := range []struct {
			off int64
			n   int
		}{{j.D, int(j.Rows * j.Cp)}, {j.BIn, int(j.Cp)}, {j.BOut, int(j.Rp)}} {
			if err := check(r.off, r.n); err != nil {
				return err
			}
		}
	}
	return nil
}

// resize returns s with length n, zeroed, reusing its memory when it can.
func resize(s []int32, n int) []int32 {
	if cap(s) < n {
		s = make([]int32, n)
	}
	s = s[:n]
	clear(s)
	return s
}
