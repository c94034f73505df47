//go:build !linux

package prune

import "time"

// threadCPU is not measured here: always 0.
func threadCPU() time.Duration { return 0 }

// processCPU is not measured here: always 0.
func processCPU() time.Duration { return 0 }
