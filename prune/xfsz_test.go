package prune

import (
	"os/signal"
	"syscall"
)

// signalIgnoreXFSZ makes writes past RLIMIT_FSIZE fail with EFBIG instead of
// killing the process.
func signalIgnoreXFSZ() { signal.Ignore(syscall.SIGXFSZ) }
