//go:build cgo && amd64 && !purego

package uarch

/*
#cgo CFLAGS: -O2 -std=c11
#include "uarch.h"
*/
import "C"

import "golang.org/x/sys/cpu"

// available reports whether the CPU runs loop o.
func available(o Op) bool {
	if ops[o].avx512 {
		return cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL
	}
	return cpu.X86.HasAVX2 && cpu.X86.HasFMA
}

// seconds runs n rounds of loop o and returns the thread's CPU time.
func seconds(o Op, n int64) float64 { return float64(C.uarch_seconds(C.int(o), C.long(n))) }
