package kernel

import (
	"testing"
)

// BenchmarkTile reports, per implementation, the time of one full 256x256
// Gaussian tile with the default constants in natural mode, and weights per
// second (SetBytes counts one byte per weight, so "MB/s" reads as millions
// of weights per second).
//
// Measured with `go test ./kernel -run XXX -bench Tile -count 3` on the
// 2-core AMD EPYC build machine while ~7 other jobs ran (load average 8, so
// the numbers are noisy; best of 3 shown), default constants
// g=1.75 T=4 K=2 h=0.5 theta=0.29, one core:
//
//	generic  28.2 ms/tile   2.32 M weights/s
//	avx2      1.21 ms/tile  54.1 M weights/s  (23x the generic path)
//
// Re-measured with `go test ./kernel -run XXX -bench . -count 5` (best of 5,
// load average about 2) after the AVX2 path moved the per-element set-up,
// weight check and finish into C: avx2 700 -> 275 us/tile (93.7 -> 238 M
// weights/s); generic unchanged at 13.0 ms/tile.
//
// With the avx512 path (AMD Zen 4 build machine, load average about 7):
// `go test ./kernel -run XXX -bench . -count 3`, best of 3: avx512 240 us,
// avx2 332 us, generic 21.2 ms per tile. Interleaved runs of avx2 and
// avx512, eight rounds each, CPU time per tile from perf stat's task-clock
// (less moved by the load than wall time): avx2 244-337 us, avx512
// 217-265 us, best 244 against 217 us (1.13x). docs/KERNEL.md explains the
// bound (the divide/square-root unit, 117 us per tile).
func BenchmarkTile(b *testing.B) {
	for _, impl := range []Impl{Generic, AVX2, AVX512} {
		b.Run(impl.String(), func(b *testing.B) {
			if !Available(impl) {
				b.Skip("not available")
			}
			k, err := New(impl, DefaultParams())
			if err != nil {
				b.Fatal(err)
			}
			ts := []Tile{{W: genW(newRNG(7), gauss, 256, 256), Rows: 256, Cols: 256}}
			b.SetBytes(256 * 256)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := k.Run(ts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
