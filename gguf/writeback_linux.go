//go:build linux

package gguf

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing f's dirty pages to disk
// now, without waiting for them, so that the fsync of Close finds little
// left to do and the disk works while the caller computes. It is advice:
// an error changes nothing that fsync will not report.
func startWriteback(f *os.File) {
	if c, err := f.SyscallConn(); err == nil {
		c.Control(func(fd uintptr) {
			unix.SyncFileRange(int(fd), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
		})
	}
}
