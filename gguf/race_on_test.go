//go:build race

package gguf

// raceOn is set in a build with the race detector, whose runtime reserves
// far more address space than TestBoundedMemory's limit.
const raceOn = true
