package gguf

import (
	"os"
	"unsafe"
)

// output is the temporary file a Writer fills, written at explicit
// offsets. Where the file system allows direct I/O, whole aligned blocks go
// to disk without passing through the page cache: copying a large model
// into the page cache and writing it back costs about as much CPU time as
// the rest of a prune. Bytes go through an aligned staging buffer, except
// the aligned middle of a write whose memory has the same phase as its file
// offset (see Writer.DirectAlign), which is written from the caller's
// memory as it is. The partial blocks at the edges of what was written,
// and everything when direct I/O is unavailable, go through the ordinary
// descriptor. Either way the file holds the same bytes.
type output struct {
	f      *os.File // the ordinary descriptor: edges, the header, fallback, fsync
	direct *os.File // the O_DIRECT descriptor, nil when unavailable or given up
	align  int      // direct I/O alignment of offsets, lengths and memory (a power of two); 1 without direct I/O

	stage []byte // staging buffer, len stageSize, its first byte aligned to align
	start int64  // file offset of stage[0]; a multiple of align while direct I/O is on
	lo, n int    // stage[lo:n] holds bytes not yet written
	since int64  // bytes written through the page cache since the last writeback request

	staged, directBytes int64 // bytes copied into the stage, and written with direct I/O (for tests)
}

// stageSize is the size of the staging buffer.
const stageSize = 4 << 20

// useDirectIO lets tests write through the page cache only, and
// testDirectAlign lets them impose a direct I/O alignment.
var (
	useDirectIO     = true
	testDirectAlign = 0
)

// newOutput returns the output for the temporary file f at path, writing
// its first byte at offset pos.
func newOutput(f *os.File, path string, pos int64) *output {
	o := &output{f: f, align: 1}
	if useDirectIO {
		o.direct, o.align = openDirect(path)
		if o.direct == nil {
			o.align = 1
		} else if testDirectAlign != 0 {
			o.align = testDirectAlign
		}
	}
	o.stage, _ = InPhase(nil, stageSize, 0, o.align)
	o.seek(pos)
	return o
}

// InPhase returns n bytes of buf whose address is congruent to off modulo
// align (a power of two, such as DirectAlign returns), with buf itself,
// reallocated when it holds fewer than n+align bytes. Bytes placed there
// and then written at file offset off go to disk without a copy.
func InPhase(buf []byte, n int, off int64, align int) (b, store []byte) {
	if cap(buf) < n+align {
		buf = make([]byte, n+align)
	}
	addr := int64(uintptr(unsafe.Pointer(unsafe.SliceData(buf[:1]))))
	skip := int(off-addr) & (align - 1)
	return buf[skip : skip+n], buf
}

// seek starts an empty stage at file offset pos.
func (o *output) seek(pos int64) {
	o.start = pos &^ int64(o.align-1)
	o.lo = int(pos - o.start)
	o.n = o.lo
}

// pos is the file offset of the next byte.
func (o *output) pos() int64 { return o.start + int64(o.n) }

// write appends p at pos.
func (o *output) write(p []byte) error {
	if o.direct != nil {
		a := o.align
		pos := o.pos()
		head := int(-pos) & (a - 1)
		phase := int(uintptr(unsafe.Pointer(unsafe.SliceData(p)))) & (a - 1)
		if len(p) >= head+a && phase == int(pos)&(a-1) {
			// Complete the current block from p, write what is staged,
			// then the aligned middle of p straight from p.
			o.n += copy(o.stage[o.n:], p[:head])
			o.staged += int64(head)
			if err := o.flush(false); err != nil {
				return err
			}
			m := (len(p) - head) &^ (a - 1)
			if err := o.writeDirect(p[head:head+m], o.start); err != nil {
				return err
			}
			o.seek(o.start + int64(m))
			p = p[head+m:]
		}
	}
	for len(p) > 0 {
		k := copy(o.stage[o.n:], p)
		o.n += k
		o.staged += int64(k)
		p = p[k:]
		if o.n == len(o.stage) {
			if err := o.flush(false); err != nil {
				return err
			}
		}
	}
	return nil
}

// flush writes what is staged. Unless final, or the stage ends on a block
// boundary, a partial block at the end stays staged (direct I/O writes
// whole blocks only), at the front of the stage.
func (o *output) flush(final bool) error {
	a := o.align
	lo, n := o.lo, o.n
	mid := min((lo+a-1)&^(a-1), n) // end of the partial block at the front
	end := n &^ (a - 1)            // start of the partial block at the back
	if end <= mid {
		// No whole block: the edge goes through the page cache, or waits.
		if !final && n&(a-1) != 0 {
			return nil
		}
		err := o.writeBuffered(o.stage[lo:n], o.start+int64(lo))
		o.seek(o.start + int64(n))
		return err
	}
	if err := o.writeBuffered(o.stage[lo:mid], o.start+int64(lo)); err != nil {
		return err
	}
	if err := o.writeDirect(o.stage[mid:end], o.start+int64(mid)); err != nil {
		return err
	}
	if final {
		if err := o.writeBuffered(o.stage[end:n], o.start+int64(end)); err != nil {
			return err
		}
		end = n
	}
	k := copy(o.stage, o.stage[end:n])
	o.start += int64(end)
	o.lo, o.n = 0, k
	return nil
}

// writeDirect writes p, whole aligned blocks, at off with direct I/O. When
// the file system refuses it (EINVAL), or writes only part of it, direct
// I/O is given up and the rest goes through the page cache.
func (o *output) writeDirect(p []byte, off int64) error {
	for len(p) > 0 && o.direct != nil {
		n, err := o.direct.WriteAt(p, off)
		p, off = p[n:], off+int64(n)
		o.directBytes += int64(n)
		if err == nil && len(p) == 0 {
			return nil
		}
		if err != nil && !directRefused(err) {
			return err
		}
		o.giveUpDirect()
	}
	return o.writeBuffered(p, off)
}

// giveUpDirect closes the direct descriptor: from now on every byte goes
// through the page cache.
func (o *output) giveUpDirect() {
	o.close()
	// The stage keeps its offsets; with align 1 every byte is "aligned".
	o.align = 1
}

// writeBuffered writes p at off through the page cache, asking the system
// every writebackEvery bytes to start writing them to disk.
func (o *output) writeBuffered(p []byte, off int64) error {
	if len(p) == 0 {
		return nil
	}
	if _, err := o.f.WriteAt(p, off); err != nil {
		return err
	}
	o.since += int64(len(p))
	if o.since >= writebackEvery {
		startWriteback(o.f)
		o.since = 0
	}
	return nil
}

// close closes the direct descriptor (the ordinary one belongs to the
// Writer).
func (o *output) close() {
	if o.direct != nil {
		o.direct.Close()
		o.direct = nil
	}
}

// finish closes the output for good and lets the staging buffer go, so
// that the finished writers of many shards do not each keep one.
func (o *output) finish() {
	o.close()
	o.stage = nil
}
