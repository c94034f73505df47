//go:build !linux

package gguf

import "os"

// startWriteback is a no-op where the system has no sync_file_range; the
// fsync of Close writes everything.
func startWriteback(f *os.File) {}
