//go:build linux

package gguf

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// openDirect opens path for writing with O_DIRECT and returns the
// descriptor and the alignment its writes need (offsets, lengths and
// memory), or nil when the file system offers no direct I/O. The alignment
// is what statx reports (STATX_DIOALIGN), else 4096, which covers the
// logical block sizes of ordinary disks; a wrong guess only makes the
// first direct write fail, after which the writer uses the page cache.
func openDirect(path string) (*os.File, int) {
	align := 4096
	var st unix.Statx_t
	if unix.Statx(unix.AT_FDCWD, path, 0, unix.STATX_DIOALIGN, &st) == nil && st.Mask&unix.STATX_DIOALIGN != 0 {
		if st.Dio_offset_align == 0 || st.Dio_mem_align == 0 {
			return nil, 1 // the file system says: no direct I/O
		}
		align = int(max(st.Dio_offset_align, st.Dio_mem_align))
		if align&(align-1) != 0 || align > stageSize/4 {
			return nil, 1
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return nil, 1
	}
	return f, align
}

// directRefused reports whether a direct write failed because the file
// system does not take it as asked (alignment, or no direct I/O at all),
// rather than for a reason that a write through the page cache would meet
// too (a full disk, a file size limit, an I/O error).
func directRefused(err error) bool {
	return errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EOPNOTSUPP)
}
