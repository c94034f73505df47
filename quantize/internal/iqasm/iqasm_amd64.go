//go:build !purego

// Package iqasm holds the Go-assembly neighbour search of the IQ grid
// encoders. It lives apart from package quantize because a package that
// uses cgo (quantize's AVX2 C codecs) cannot also hold Go assembly.
package iqasm

import "golang.org/x/sys/cpu"

// HasAVX2 reports whether the AVX2 routines may be called on this CPU.
var HasAVX2 = cpu.X86.HasAVX2

// Dist8x8AVX2 writes, for the 8 grid entries idx[c] of 8 values each
// (entry j at grid[8j:8j+8]), out[c] = sum over i = 0..7, in that order, of
// (w[i]*e)*e with e = scale*grid[8*idx[c]+i] - x[i], every product and
// difference rounded to float32 (no fused multiply-add), as the Go loops of
// quantize's bestNeighbour8 compute it. Every idx[c] must be an entry of
// grid.
//
//go:noescape
func Dist8x8AVX2(out *[8]float32, grid *float32, idx *[8]uint16, x, w *[8]float32, scale float32)

// Dist4x8AVX2 is Dist8x8AVX2 for grids of 4 values per entry (entry j at
// grid[4j:4j+4]), i = 0..3.
//
//go:noescape
func Dist4x8AVX2(out *[8]float32, grid *float32, idx *[8]uint16, x, w *[4]float32, scale float32)
