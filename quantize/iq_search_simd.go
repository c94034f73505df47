package quantize

import (
	"math"

	"github.com/physarium/physarium-gguf/quantize/internal/iqasm"
)

// The SIMD path of the IQ grid encoders' neighbour search (ggml's
// iq2_find_best_neighbour and iq3_find_best_neighbour): Go assembly
// (package iqasm: never in purego builds or off amd64) computes the
// distances of 8 candidates at once, one per lane, each summed in the Go
// twin's order, and the Go code compares them in list order. The lists
// are short (5 to 30 entries on average), too short to pay for a cgo call.
// The routines are called directly, not through simdIQSearch's function
// value, so that their arguments stay on the stack.
var simdIQSearch simdRoutine[bool]

func init() {
	if iqasm.HasAVX2 {
		simdIQSearch.provide("avx2", true)
	}
}

// bestNeighbourLanes is bestNeighbour8 (dims 8) and bestNeighbour4
// (dims 4, x and w of 4 values) with the distances from the assembly, 8
// candidates a call: a last call of fewer pads its lanes with its first
// candidate, whose distances are not compared.
func bestNeighbourLanes(dims int, gridF []float32, list []uint16, x, w []float32, scale float32) int {
	best := float32(math.MaxFloat32)
	gi := int(list[0])
	var idx [8]uint16
	var d [8]float32
	for n := 0; n < len(list); n += 8 {
		k := padLanes(&idx, list[n:])
		if dims == 8 {
			iqasm.Dist8x8AVX2(&d, &gridF[0], &idx, (*[8]float32)(x), (*[8]float32)(w), scale)
		} else {
			iqasm.Dist4x8AVX2(&d, &gridF[0], &idx, (*[4]float32)(x), (*[4]float32)(w), scale)
		}
		for c := 0; c < k; c++ {
			if d[c] < best {
				best, gi = d[c], int(idx[c])
			}
		}
	}
	return gi
}

// padLanes copies up to 8 candidates of list into idx, fills the lanes
// left with the first, and returns how many it copied.
func padLanes(idx *[8]uint16, list []uint16) int {
	k := copy(idx[:], list)
	for c := k; c < 8; c++ {
		idx[c] = list[0]
	}
	return k
}
