//go:build unix

package gguf

import (
	"errors"
	"syscall"
)

// processRuns reports whether a process with this id exists (one of
// another user counts: signalling it is refused, not impossible).
func processRuns(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
