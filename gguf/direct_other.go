//go:build !linux

package gguf

import "os"

// openDirect reports that direct I/O is not used on this system: every
// byte goes through the page cache.
func openDirect(path string) (*os.File, int) { return nil, 1 }

// directRefused is never asked where direct I/O is not used.
func directRefused(err error) bool { return false }
