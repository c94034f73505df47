package gguf

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// Header is what Create writes before the tensor data.
type Header struct {
	Version uint32       // 3 by default when 0
	KVs     []KV         // written in this order; general.alignment, when present, sets the alignment
	Tensors []TensorInfo // Name/Type/Shape used; Offset is computed by the writer (running sum of
	// sizes padded to the alignment, in this order)
}

// CreateOptions controls Create.
type CreateOptions struct {
	Overwrite bool // replace an existing target; without it an existing target is an error
}

// Writer streams a GGUF file to a temporary file beside the target. Close
// (CloseHeader for a writer from CreateDeferred) fsyncs it and renames it
// into place; Abort, or any error, removes the temporary file and leaves no
// output.
type Writer struct {
	path      string
	target    string // path, or where the symbolic link at path leads (see CheckTarget)
	tmp       string
	file      *os.File
	out       *output // what goes into file, staged, and written directly where it can
	overwrite bool
	align     uint64
	tensors   []TensorInfo
	sizes     []uint64
	cur       int    // index of the tensor being written
	done      uint64 // bytes of the current tensor written so far
	pos       uint64 // bytes written so far
	err       error  // sticky: set on the first failure
	closed    bool
	version   uint32
	// deferred: CreateDeferred left dataStart bytes for the header, which
	// CloseHeader writes; moved says the final header did not fit the room
	// and the data were copied behind it.
	deferred  bool
	dataStart uint64
	moved     bool
	// hold: Close and CloseHeader leave the complete file at its temporary
	// path (held) for Commit to rename.
	hold, held bool
}

var zeros [4096]byte

// skipSync turns off fsync; only the fuzz test sets it, to run faster.
var skipSync bool

// Create validates h, computes the tensor offsets and writes the header to
// a temporary file in the directory of path.
func Create(path string, h Header, opts CreateOptions) (*Writer, error) {
	w, err := newWriter(path, h, opts)
	if err != nil {
		return nil, err
	}
	if err := w.createTemp(0); err != nil {
		return nil, err
	}
	if err := w.header(h, w.raw, nil); err != nil {
		return nil, w.fatal(err)
	}
	if len(w.tensors) > 0 {
		if err := w.pad(); err != nil {
			return nil, err
		}
	}
	w.dataStart = w.pos
	return w, nil
}

// CreateDeferred is Create for a header whose KV values are only known once
// the tensor data have been written (counts, checksums). h is a provisional
// header with the final tensors; the writer leaves room for it, padded to
// the alignment, and the data go behind that room. CloseHeader then writes
// the final header. The room fits when the final header pads to the same
// size, which is the case whenever the values that change keep their
// encoded lengths or change them by less than the padding slack.
func CreateDeferred(path string, h Header, opts CreateOptions) (*Writer, error) {
	w, err := newWriter(path, h, opts)
	if err != nil {
		return nil, err
	}
	var size uint64
	w.header(h, func(b []byte) error { size += uint64(len(b)); return nil }, func(n int64) { size += uint64(n) })
	w.pos = w.headerEnd(size)
	w.dataStart = w.pos
	w.deferred = true
	if err := w.createTemp(int64(w.pos)); err != nil {
		return nil, err
	}
	return w, nil
}

// newWriter validates h and computes the tensor offsets; it creates no file.
func newWriter(path string, h Header, opts CreateOptions) (*Writer, error) {
	fail := func(format string, args ...any) (*Writer, error) {
		return nil, fmt.Errorf("gguf: %s: "+format, append([]any{path}, args...)...)
	}
	var err error
	version := h.Version
	if version == 0 {
		version = 3
	}
	if version != 2 && version != 3 {
		return fail("cannot write GGUF version %d (only 2 and 3)", version)
	}
	align := uint64(DefaultAlignment)
	seen := make(map[string]bool, len(h.KVs))
	for _, kv := range h.KVs {
		if err := checkKey(kv.Key); err != nil {
			return fail("key %q %v", kv.Key, err)
		}
		if seen[kv.Key] {
			return fail("duplicate key %q", kv.Key)
		}
		seen[kv.Key] = true
		if err := kv.Value.check(); err != nil {
			return fail("key %q: %v", kv.Key, err)
		}
		if kv.Key == AlignmentKey {
			a, ok := kv.Value.Data.(uint32)
			if kv.Value.Type != TypeUint32 || !ok {
				return fail("key %q must be of type UINT32, not %s", AlignmentKey, kv.Value.Type)
			}
			if a == 0 || a&(a-1) != 0 {
				return fail("key %q: alignment %d is not a power of two", AlignmentKey, a)
			}
			align = uint64(a)
		}
	}
	w := &Writer{path: path, overwrite: opts.Overwrite, align: align, version: version}
	names := make(map[string]bool, len(h.Tensors))
	off := uint64(0)
	for i, t := range h.Tensors {
		if err := checkTensorName(t.Name); err != nil {
			return fail("tensor %d: name %q %v", i, t.Name, err)
		}
		if names[nameKey(t.Name)] {
			return fail("duplicate tensor name %q", t.Name)
		}
		names[nameKey(t.Name)] = true
		n, err := t.size()
		if err != nil {
			return fail("tensor %q: %v", t.Name, err)
		}
		t.Shape = append([]uint64(nil), t.Shape...)
		t.Offset = off
		w.tensors = append(w.tensors, t)
		w.sizes = append(w.sizes, n)
		padded := alignUp(n, align)
		if padded < n || off+padded < off || off+padded > 1<<62 {
			return fail("tensor %q: data section size overflows", t.Name)
		}
		off += padded
	}
	if w.target, err = resolveTarget(path, opts.Overwrite); err != nil {
		return nil, err
	}
	return w, nil
}

// createTemp opens the temporary file beside the target; the first byte
// written goes to offset pos.
func (w *Writer) createTemp(pos int64) error {
	file, err := w.newTemp()
	if err != nil {
		return err
	}
	w.file = file
	w.tmp = file.Name()
	w.out = newOutput(file, w.tmp, pos)
	return nil
}

// writebackEvery is how many bytes the writer lets the page cache collect
// before it asks the kernel to start writing them out, so that a large
// output streams to disk while it is being produced instead of all at the
// closing fsync.
const writebackEvery = 64 << 20

// DirectAlign returns the alignment A of the writer's direct I/O, or 1
// when it writes through the page cache. The aligned middle of a Write
// whose memory starts at an address congruent to its file offset modulo A
// goes to disk from the caller's memory; the rest is copied through a
// staging buffer first. The bytes in the file are the same either way.
func (w *Writer) DirectAlign() int { return w.out.align }

// DataOffset returns the file offset at which the tensor data start: the
// file offset of a tensor's first byte is DataOffset plus the Offset that
// Tensors reports for it.
func (w *Writer) DataOffset() uint64 { return w.dataStart }

// newTemp creates a readable (0644) temporary file beside the target,
// named for it and for this process (see RemoveStale).
func (w *Writer) newTemp() (*os.File, error) {
	file, err := createPartial(w.target)
	if err != nil {
		return nil, fmt.Errorf("gguf: %s: %w", w.path, err)
	}
	return file, nil
}

// headerEnd is where the data section starts after a header of n bytes:
// the next multiple of the alignment, or n itself in a file without
// tensors (llama.cpp requires the padding only before tensor data, and
// an alignment of up to 2^31 would otherwise pad an empty file to 2 GiB).
func (w *Writer) headerEnd(n uint64) uint64 {
	if len(w.tensors) == 0 {
		return n
	}
	return alignUp(n, w.align)
}

// header encodes the header of h with the writer's tensor infos, handing
// it to emit in pieces of about 1 MB. With skip set, an array left in its
// file (*ArrayRef) is not read: skip gets its size instead.
func (w *Writer) header(h Header, emit func([]byte) error, skip func(int64)) error {
	b := make([]byte, 0, 4096)
	b = append(b, magic[:]...)
	b = appendU32(b, w.version)
	b = appendU64(b, uint64(len(w.tensors)))
	b = appendU64(b, uint64(len(h.KVs)))
	for _, kv := range h.KVs {
		b = appendString(b, kv.Key)
		b = appendU32(b, uint32(kv.Value.Type))
		if a, ok := kv.Value.Data.(*ArrayRef); ok {
			// An array left in its file is copied from there in pieces.
			b = appendU64(appendU32(b, uint32(a.elem)), a.n)
			if err := emit(b); err != nil {
				return err
			}
			b = b[:0]
			if skip != nil {
				skip(a.size)
				continue
			}
			if err := copyArray(a, emit, func(err error) error {
				return fmt.Errorf("gguf: %s: key %q: copying an array of %d %s from its file: %w", w.path, kv.Key, a.n, a.elem, err)
			}); err != nil {
				return err
			}
			continue
		}
		b = appendValue(b, kv.Value)
		if len(b) >= 1<<20 {
			if err := emit(b); err != nil {
				return err
			}
			b = b[:0]
		}
	}
	for _, t := range w.tensors {
		b = appendString(b, t.Name)
		b = appendU32(b, uint32(len(t.Shape)))
		for _, d := range t.Shape {
			b = appendU64(b, d)
		}
		b = appendU32(b, uint32(t.Type))
		b = appendU64(b, t.Offset)
	}
	return emit(b)
}

// copyArray hands the encoded elements of a to emit in pieces of 1 MiB;
// readErr words a failure to read them.
func copyArray(a *ArrayRef, emit func([]byte) error, readErr func(error) error) error {
	buf := make([]byte, min(a.size, 1<<20))
	r := a.Reader()
	for left := a.size; left > 0; {
		p := buf[:min(left, int64(len(buf)))]
		if _, err := io.ReadFull(r, p); err != nil {
			return readErr(err)
		}
		if err := emit(p); err != nil {
			return err
		}
		left -= int64(len(p))
	}
	return nil
}

// Tensors returns the tensor infos with the offsets the writer computed.
func (w *Writer) Tensors() []TensorInfo {
	out := make([]TensorInfo, len(w.tensors))
	for i, t := range w.tensors {
		t.Shape = append([]uint64(nil), t.Shape...)
		out[i] = t
	}
	return out
}

// fatal records err, removes the temporary file and returns err.
func (w *Writer) fatal(err error) error {
	if w.err == nil {
		w.err = err
	}
	w.cleanup()
	return w.err
}

func (w *Writer) cleanup() {
	if w.out != nil {
		w.out.finish()
	}
	if w.file != nil {
		w.file.Close()
		os.Remove(w.tmp)
		w.file = nil
	}
	if w.held {
		os.Remove(w.tmp)
		w.held = false
	}
}

// raw writes header or padding bytes.
func (w *Writer) raw(b []byte) error {
	err := w.out.write(b)
	w.pos += uint64(len(b))
	if err != nil {
		return w.fatal(fmt.Errorf("gguf: %s: %w", w.path, err))
	}
	return nil
}

// pad writes zeros up to the next multiple of the alignment.
func (w *Writer) pad() error {
	n := int(alignUp(w.pos, w.align) - w.pos)
	for n > 0 {
		k := min(n, len(zeros))
		if err := w.raw(zeros[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// skipEmpty completes zero-byte tensors at the current position (they need
// no data and no padding).
func (w *Writer) skipEmpty() {
	for w.cur < len(w.tensors) && w.sizes[w.cur] == 0 {
		w.cur++
	}
}

func (w *Writer) usable() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return fmt.Errorf("gguf: %s: writer is closed", w.path)
	}
	return nil
}

// Write streams data of the current tensor, in any chunking. When a tensor
// is complete the writer pads to the alignment and moves to the next one.
// Writing more bytes than the current tensor holds is an error, which, like
// any error, aborts the output.
func (w *Writer) Write(p []byte) (int, error) {
	if err := w.usable(); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if w.done == 0 {
		w.skipEmpty()
	}
	if w.cur >= len(w.tensors) {
		return 0, w.fatal(fmt.Errorf("gguf: %s: write of %d bytes after the last tensor", w.path, len(p)))
	}
	t := w.tensors[w.cur]
	left := w.sizes[w.cur] - w.done
	if uint64(len(p)) > left {
		return 0, w.fatal(fmt.Errorf("gguf: %s: tensor %q: write of %d bytes, but only %d of its %d bytes are left", w.path, t.Name, len(p), left, w.sizes[w.cur]))
	}
	if err := w.out.write(p); err != nil {
		return 0, w.fatal(fmt.Errorf("gguf: %s: tensor %q: %w", w.path, t.Name, err))
	}
	n := len(p)
	w.done += uint64(n)
	w.pos += uint64(n)
	if w.done == w.sizes[w.cur] {
		if err := w.pad(); err != nil {
			return n, err
		}
		w.cur++
		w.done = 0
	}
	return n, nil
}

// WriteTensor writes the whole next tensor from r, which must supply at
// least Bytes() bytes (only that many are read).
func (w *Writer) WriteTensor(r io.Reader) error {
	if err := w.usable(); err != nil {
		return err
	}
	if w.done != 0 {
		t := w.tensors[w.cur]
		return w.fatal(fmt.Errorf("gguf: %s: tensor %q: WriteTensor after a partial Write (%d of %d bytes)", w.path, t.Name, w.done, w.sizes[w.cur]))
	}
	if w.cur >= len(w.tensors) {
		return w.fatal(fmt.Errorf("gguf: %s: WriteTensor after the last tensor", w.path))
	}
	t, n := w.tensors[w.cur], w.sizes[w.cur]
	if n == 0 {
		w.cur++
		return nil
	}
	copied, err := io.CopyN(onlyWriter{w}, r, int64(n))
	if err != nil {
		if w.err != nil {
			return w.err
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return w.fatal(fmt.Errorf("gguf: %s: tensor %q: read %d of %d bytes: %w", w.path, t.Name, copied, n, err))
	}
	return nil
}

// onlyWriter hides the Writer's other methods from io.Copy.
type onlyWriter struct{ w *Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

// Close checks that every tensor was written, flushes and fsyncs the
// temporary file, renames it to the target and fsyncs the directory.
func (w *Writer) Close() error {
	if w.closed || w.err != nil || w.held {
		return w.err
	}
	if w.deferred {
		return w.fatal(fmt.Errorf("gguf: %s: a writer from CreateDeferred is closed with CloseHeader", w.path))
	}
	if err := w.complete(); err != nil {
		return err
	}
	return w.commit()
}

// complete checks that every tensor was written and flushes the buffer.
func (w *Writer) complete() error {
	if w.done == 0 {
		w.skipEmpty()
	}
	if w.cur < len(w.tensors) {
		t := w.tensors[w.cur]
		return w.fatal(fmt.Errorf("gguf: %s: tensor %q is incomplete (%d of %d bytes), %d tensors missing", w.path, t.Name, w.done, w.sizes[w.cur], len(w.tensors)-w.cur))
	}
	if err := w.out.flush(true); err != nil {
		return w.fatal(fmt.Errorf("gguf: %s: %w", w.path, err))
	}
	return nil
}

// CloseHeader finishes a writer from CreateDeferred: it checks that every
// tensor was written, writes h (whose tensors must be those given to
// CreateDeferred, name, type and shape, with the same alignment) in front
// of the data, then fsyncs and renames as Close does. When h does not pad
// to the room left for it, the data are copied behind it into a new
// temporary file (see Moved).
func (w *Writer) CloseHeader(h Header) error {
	if w.closed || w.err != nil || w.held {
		return w.err
	}
	if !w.deferred {
		return w.fatal(fmt.Errorf("gguf: %s: CloseHeader on a writer whose header is written", w.path))
	}
	final, err := newWriter(w.path, h, CreateOptions{Overwrite: true})
	if err != nil {
		return w.fatal(err)
	}
	if final.align != w.align || final.version != w.version || len(final.tensors) != len(w.tensors) {
		return w.fatal(fmt.Errorf("gguf: %s: the final header changes the version, the alignment or the tensor count", w.path))
	}
	for i, t := range final.tensors {
		o := w.tensors[i]
		if t.Name != o.Name || t.Type != o.Type || !slices.Equal(t.Shape, o.Shape) {
			return w.fatal(fmt.Errorf("gguf: %s: the final header changes tensor %d (%q)", w.path, i, o.Name))
		}
	}
	if err := w.complete(); err != nil {
		return err
	}
	var hb []byte
	if err := w.header(h, func(b []byte) error { hb = append(hb, b...); return nil }, nil); err != nil {
		return w.fatal(err)
	}
	size := w.headerEnd(uint64(len(hb)))
	hb = append(hb, make([]byte, size-uint64(len(hb)))...)
	if size == w.dataStart {
		if _, err := w.file.WriteAt(hb, 0); err != nil {
			return w.fatal(fmt.Errorf("gguf: %s: %w", w.path, err))
		}
		return w.commit()
	}
	// The header does not fit: write it to a new temporary file and copy
	// the data behind it inside the kernel.
	nf, err := w.newTemp()
	if err != nil {
		return w.fatal(err)
	}
	fail := func(err error) error {
		nf.Close()
		os.Remove(nf.Name())
		return w.fatal(fmt.Errorf("gguf: %s: %w", w.path, err))
	}
	if _, err := nf.Write(hb); err != nil {
		return fail(err)
	}
	if _, err := w.file.Seek(int64(w.dataStart), io.SeekStart); err != nil {
		return fail(err)
	}
	n := int64(w.pos - w.dataStart)
	copied, err := nf.ReadFrom(io.LimitReader(w.file, n))
	if err == nil && copied != n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return fail(err)
	}
	w.out.close()
	w.file.Close()
	os.Remove(w.tmp)
	w.file, w.tmp, w.moved = nf, nf.Name(), true
	w.pos = size + uint64(n)
	return w.commit()
}

// Moved reports whether CloseHeader had to copy the data behind a header
// that did not fit the room CreateDeferred left.
func (w *Writer) Moved() bool { return w.moved }

// commit fsyncs the temporary file, renames it to the target and fsyncs
// the directory.
func (w *Writer) commit() error {
	w.out.finish()
	if err := w.sync(); err != nil {
		return w.fatal(fmt.Errorf("gguf: %s: fsync: %w", w.path, err))
	}
	if err := w.file.Close(); err != nil {
		w.file = nil
		os.Remove(w.tmp)
		return w.fatal(fmt.Errorf("gguf: %s: %w", w.path, err))
	}
	w.file = nil
	if w.hold {
		w.held = true
		return nil
	}
	return w.rename()
}

// Hold makes Close and CloseHeader stop short of the rename: the complete,
// fsynced file waits at its temporary path until Commit renames it, or
// Abort removes it. Writers of the shards of one model use it so that no
// shard lands before every shard is complete.
func (w *Writer) Hold() { w.hold = true }

// Commit renames the file that Close or CloseHeader completed under Hold
// into place and fsyncs the directory.
func (w *Writer) Commit() error {
	if w.err != nil {
		return w.err
	}
	if !w.held {
		return w.fatal(fmt.Errorf("gguf: %s: Commit before Close under Hold", w.path))
	}
	w.held = false
	return w.rename()
}

// rename moves the complete temporary file to the target and fsyncs the
// directory.
func (w *Writer) rename() error {
	// What lies at the target may have changed while the data were written.
	target, err := resolveTarget(w.path, w.overwrite)
	if err == nil && target != w.target {
		err = fmt.Errorf("gguf: %s: the link now leads to %s, not %s, where the file was written", w.path, target, w.target)
	}
	if err != nil {
		os.Remove(w.tmp)
		return w.fatal(err)
	}
	if err := os.Rename(w.tmp, target); err != nil {
		os.Remove(w.tmp)
		return w.fatal(fmt.Errorf("gguf: %s: %w", w.path, err))
	}
	w.closed = true
	if skipSync {
		return nil
	}
	if err := syncDir(filepath.Dir(target)); err != nil {
		w.err = fmt.Errorf("gguf: %s: fsync directory: %w", w.path, err)
		return w.err
	}
	return nil
}

// Abort removes the temporary file; it is a no-op after Close.
func (w *Writer) Abort() error {
	if w.closed {
		return nil
	}
	if w.err == nil {
		w.err = fmt.Errorf("gguf: %s: writer aborted", w.path)
	}
	w.cleanup()
	w.closed = true
	return nil
}

func (w *Writer) sync() error {
	if skipSync {
		return nil
	}
	return w.file.Sync()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
