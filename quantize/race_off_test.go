//go:build !race

package quantize

// raceEnabled reports whether the tests run under the race detector.
const raceEnabled = false
