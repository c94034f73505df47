//go:build !cgo || !amd64 || purego

package uarch

// available is false: the loops are x86-64 assembly built with cgo.
func available(Op) bool { return false }

// seconds is never called here.
func seconds(Op, int64) float64 { return 0 }
