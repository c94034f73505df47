//go:build !race

package gguf

// raceOn is set in a build with the race detector.
const raceOn = false
