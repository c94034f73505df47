package gguf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
// fsyncs it and renames it into place; Abort, or any error, removes the
// temporary file and leaves no output.
type Writer struct {
	path      string
	tmp       string
	file      *os.File
	bw        *bufio.Writer
	overwrite bool
	align     uint64
	tensors   []TensorInfo
	sizes     []uint64
	cur       int    // index of the tensor being written
	done      uint64 // bytes of the current tensor written so far
	pos       uint64 // bytes written so far
	err       error  // sticky: set on the first failure
	closed    bool
}

var zeros [4096]byte

// skipSync turns off fsync; only the fuzz test sets it, to run faster.
var skipSync bool

// Create validates h, computes the tensor offsets and writes the header to
// a temporary file in the directory of path.
func Create(path string, h Header, opts CreateOptions) (*Writer, error) {
	fail := func(format string, args ...any) (*Writer, error) {
		return nil, fmt.Errorf("gguf: %s: "+format, append([]any{path}, args...)...)
	}
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
		if err := checkName(kv.Key, MaxKeyLen); err != nil {
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
	w := &Writer{path: path, overwrite: opts.Overwrite, align: align}
	names := make(map[string]bool, len(h.Tensors))
	off := uint64(0)
	for i, t := range h.Tensors {
		if err := checkName(t.Name, MaxNameLen); err != nil {
			return fail("tensor %d: name %q %v", i, t.Name, err)
		}
		if names[t.Name] {
			return fail("duplicate tensor name %q", t.Name)
		}
		names[t.Name] = true
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
	if !opts.Overwrite {
		if _, err := os.Lstat(path); err == nil {
			return fail("target exists (overwrite not requested)")
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("gguf: %w", err)
		}
	}

	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	file, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("gguf: %s: %w", path, err)
	}
	w.file = file
	w.tmp = file.Name()
	// CreateTemp makes the file private (0600); a model is an ordinary
	// readable file, as the other tools of the ecosystem write it.
	if err := file.Chmod(0o644); err != nil {
		file.Close()
		os.Remove(w.tmp)
		return nil, fmt.Errorf("gguf: %s: %w", path, err)
	}
	w.bw = bufio.NewWriterSize(file, 1<<20)

	b := make([]byte, 0, 4096)
	b = append(b, magic[:]...)
	b = appendU32(b, version)
	b = appendU64(b, uint64(len(w.tensors)))
	b = appendU64(b, uint64(len(h.KVs)))
	for _, kv := range h.KVs {
		b = appendString(b, kv.Key)
		b = appendU32(b, uint32(kv.Value.Type))
		b = appendValue(b, kv.Value)
		if len(b) >= 1<<20 {
			if err := w.raw(b); err != nil {
				return nil, err
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
	if err := w.raw(b); err != nil {
		return nil, err
	}
	if err := w.pad(); err != nil {
		return nil, err
	}
	return w, nil
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
	if w.file != nil {
		w.file.Close()
		os.Remove(w.tmp)
		w.file = nil
	}
}

// raw writes header or padding bytes.
func (w *Writer) raw(b []byte) error {
	n, err := w.bw.Write(b)
	w.pos += uint64(n)
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
	n, err := w.bw.Write(p)
	w.done += uint64(n)
	w.pos += uint64(n)
	if err != nil {
		return n, w.fatal(fmt.Errorf("gguf: %s: tensor %q: %w", w.path, t.Name, err))
	}
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
// least Bytes() bytes (only that many are read). When r is an *os.File the
// bytes are copied from its current offset inside the kernel
// (copy_file_range where the system has it), without passing through user
// memory.
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
	if f, ok := r.(*os.File); ok {
		return w.tensorFromFile(f, t, n)
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
	if w.closed {
		return w.err
	}
	if w.err != nil {
		return w.err
	}
	if w.done == 0 {
		w.skipEmpty()
	}
	if w.cur < len(w.tensors) {
		t := w.tensors[w.cur]
		return w.fatal(fmt.Errorf("gguf: %s: tensor %q is incomplete (%d of %d bytes), %d tensors missing", w.path, t.Name, w.done, w.sizes[w.cur], len(w.tensors)-w.cur))
	}
	if err := w.bw.Flush(); err != nil {
		return w.fatal(fmt.Errorf("gguf: %s: %w", w.path, err))
	}
	if err := w.sync(); err != nil {
		return w.fatal(fmt.Errorf("gguf: %s: fsync: %w", w.path, err))
	}
	if err := w.file.Close(); err != nil {
		w.file = nil
		os.Remove(w.tmp)
		return w.fatal(fmt.Errorf("gguf: %s: %w", w.path, err))
	}
	w.file = nil
	if !w.overwrite {
		if _, err := os.Lstat(w.path); err == nil {
			os.Remove(w.tmp)
			return w.fatal(fmt.Errorf("gguf: %s: target exists (overwrite not requested)", w.path))
		}
	}
	if err := os.Rename(w.tmp, w.path); err != nil {
		os.Remove(w.tmp)
		return w.fatal(fmt.Errorf("gguf: %s: %w", w.path, err))
	}
	w.closed = true
	if skipSync {
		return nil
	}
	if err := syncDir(filepath.Dir(w.path)); err != nil {
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

// tensorFromFile writes the current tensor's n bytes from f's current
// offset with the file-to-file copy of os.File.ReadFrom.
func (w *Writer) tensorFromFile(f *os.File, t TensorInfo, n uint64) error {
	if err := w.bw.Flush(); err != nil {
		return w.fatal(fmt.Errorf("gguf: %s: %w", w.path, err))
	}
	copied, err := w.file.ReadFrom(io.LimitReader(f, int64(n)))
	w.pos += uint64(copied)
	if err == nil && uint64(copied) < n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return w.fatal(fmt.Errorf("gguf: %s: tensor %q: read %d of %d bytes from %s: %w", w.path, t.Name, copied, n, f.Name(), err))
	}
	if err := w.pad(); err != nil {
		return err
	}
	w.cur++
	return nil
}
