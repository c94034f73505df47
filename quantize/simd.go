package quantize

import "sync/atomic"

// SIMD dispatch. Every routine with a SIMD implementation keeps a generic Go
// twin that is always compiled and computes the same bits. The SIMD one
// lives in a simdRoutine, provided at init by the file that builds it
// (legacy_avx2.go, float_avx2.go, kquants_avx2_cgo.go: cgo AVX2 C;
// kquants_simd.go: Go assembly) when the CPU has the features; use is the
// one place that decides whether a call takes it.

// simdOff is set by SetSIMD(false). It is atomic, so SetSIMD is safe to call
// while codecs run: a call in flight may finish on either path, and both
// give identical bits.
var simdOff atomic.Bool

// simdPathName names the SIMD paths provided at init ("avx2"), "" when the
// build or the CPU has none. It is written only by init functions.
var simdPathName string

// simdRoutine holds the SIMD implementation of one routine, of type F.
type simdRoutine[F any] struct {
	fn       F
	provided bool
}

// provide installs fn, the routine built for the named SIMD path (from an
// init function only).
func (r *simdRoutine[F]) provide(path string, fn F) {
	r.fn, r.provided = fn, true
	simdPathName = path
}

// use returns the SIMD routine and true when it was provided and SetSIMD
// has not turned the SIMD paths off; otherwise the caller runs the Go twin.
func (r *simdRoutine[F]) use() (fn F, ok bool) {
	if !r.provided || simdOff.Load() {
		return fn, false
	}
	return r.fn, true
}

// SIMD returns the name of the SIMD path the codecs use ("avx2"), or "go"
// when they run the pure-Go code (no SIMD path in this build or on this CPU,
// or SetSIMD(false)).
func SIMD() string {
	if simdPathName == "" || simdOff.Load() {
		return "go"
	}
	return simdPathName
}

// SetSIMD enables (the default) or disables the SIMD paths and returns the
// previous setting. Both paths give identical bits. It is safe for
// concurrent use, also while codecs run.
func SetSIMD(enabled bool) (was bool) {
	return !simdOff.Swap(!enabled)
}
