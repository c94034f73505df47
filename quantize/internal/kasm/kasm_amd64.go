//go:build !purego

// Package kasm holds the Go-assembly K-quant decoding loops. It lives apart
// from package quantize because a package that uses cgo (quantize's AVX2 C
// codecs) cannot also hold Go assembly.
package kasm

import "golang.org/x/sys/cpu"

// HasAVX2 reports whether the AVX2 routines may be called on this CPU.
var HasAVX2 = cpu.X86.HasAVX2

// DecQ4K64AVX2 decodes one 64-value pair of Q4_K sub-blocks: for l in 0..31,
// y[l] = d1*float32(q[l]&15) - m1 and y[32+l] = d2*float32(q[l]>>4) - m2,
// each product rounded before the subtraction (no fused multiply-add), as
// ggml's dequantize_row_q4_K computes it.
//
//go:noescape
func DecQ4K64AVX2(y *[64]float32, q *[32]byte, d1, m1, d2, m2 float32)
