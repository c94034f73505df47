package gguf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"slices"
	"strings"
	"unsafe"
)

// Format limits.
const (
	// DefaultAlignment is the data alignment when general.alignment is absent.
	DefaultAlignment = 32
	// AlignmentKey is the metadata key that sets the data alignment.
	AlignmentKey = "general.alignment"
	// MaxNameLen is the longest tensor name ggml accepts, in bytes.
	MaxNameLen = 63
	// MaxKeyLen is the longest metadata key the GGUF specification allows.
	// Neither llama.cpp nor this package enforces it: a key may be as long
	// as any string (MaxStringLen).
	MaxKeyLen = 1<<16 - 1
	// MaxDims is the largest number of tensor dimensions.
	MaxDims = 4
	// MaxStringLen is the longest string (key, value, array element or
	// tensor name) the reader accepts, in bytes: llama.cpp's
	// GGUF_MAX_STRING_LENGTH. A longer one is an ErrLimit.
	MaxStringLen = 1 << 30
	// MaxArrayLen is the largest element count of an array the reader
	// accepts: llama.cpp's GGUF_MAX_ARRAY_ELEMENTS. A larger one is an
	// ErrLimit.
	MaxArrayLen = 1 << 30
	// MaxEagerArrayBytes is the largest encoded size of an array's elements
	// that the reader decodes into a slice; a larger array (no tokenizer
	// table comes near) stays in the file as an *ArrayRef, so that memory
	// follows what is used, not what a header claims.
	MaxEagerArrayBytes = 16 << 20
)

var magic = [4]byte{'G', 'G', 'U', 'F'}

// Minimum encoded sizes, used to refuse early a count that the bytes left
// cannot hold.
const (
	minKVBytes     = 8 + 1 + 4 + 1 // key length, 1-byte key (keys are not empty), type, 1-byte value
	minTensorBytes = 8 + 4 + 4 + 8 // name length (names may be empty), n_dims (may be 0), type, offset
)

// TensorInfo describes one tensor as stored in a GGUF tensor info.
type TensorInfo struct {
	Name   string
	Type   Type
	Shape  []uint64 // ne[0], ne[1], ... (1 to 4 dims); ne[0] is the contiguous dimension
	Offset uint64   // offset relative to the start of the data section, as stored in the file
}

// Elements returns the number of elements: the product of Shape. It wraps
// on overflow; tensors read by Open or accepted by Create never overflow.
func (t TensorInfo) Elements() uint64 {
	n := uint64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Bytes returns the storage size of the tensor in bytes (rows times row
// bytes), without padding. It returns 0 when the type is unknown, ne[0] is
// not a whole number of blocks or the size overflows; tensors read by Open
// or accepted by Create always have a valid size.
func (t TensorInfo) Bytes() uint64 {
	n, err := t.size()
	if err != nil {
		return 0
	}
	return n
}

// size validates the type and shape of t as ggml does and returns its byte
// size. A tensor without dimensions is a scalar, as in ggml.
func (t TensorInfo) size() (uint64, error) {
	if len(t.Shape) > MaxDims {
		return 0, fmt.Errorf("has %d dimensions, want at most %d", len(t.Shape), MaxDims)
	}
	ne := [MaxDims]uint64{1, 1, 1, 1}
	copy(ne[:], t.Shape)
	for i, d := range ne {
		if d > math.MaxInt64 {
			return 0, fmt.Errorf("dimension %d has %d elements, more than the int64 limit", i, d)
		}
	}
	// ggml's test of the element count, term for term: with no dimension
	// 0, refuse when ne0 >= MAX/ne1, ne0*ne1 >= MAX/ne2 or
	// ne0*ne1*ne2 >= MAX/ne3 (each product is below MAX when it is
	// reached). ggml skips the test when its int64 product of all four
	// wraps to 0 or below; such a shape (ne = [512, 2^62] wraps to 0) is
	// accepted by llama.cpp, which is its bug: refused here.
	elems := uint64(0)
	if ne[0] != 0 && ne[1] != 0 && ne[2] != 0 && ne[3] != 0 {
		const maxI = math.MaxInt64
		if maxI/ne[1] <= ne[0] || maxI/ne[2] <= ne[0]*ne[1] || maxI/ne[3] <= ne[0]*ne[1]*ne[2] {
			return 0, fmt.Errorf("shape %v: element count overflows int64", t.Shape)
		}
		elems = ne[0] * ne[1] * ne[2] * ne[3]
	}
	ti, ok := t.Type.Info()
	if !ok {
		return 0, fmt.Errorf("has unknown type id %d", uint32(t.Type))
	}
	if ne[0]%uint64(ti.BlockSize) != 0 {
		return 0, fmt.Errorf("type %s: ne[0]=%d is not divisible by the block size %d", ti.Name, ne[0], ti.BlockSize)
	}
	hi, lo := bits.Mul64(elems/uint64(ti.BlockSize), uint64(ti.BlockBytes))
	if hi != 0 || lo > math.MaxInt64 {
		return 0, fmt.Errorf("shape %v: byte size overflows int64", t.Shape)
	}
	return lo, nil
}

// File is an open GGUF file; it is safe for concurrent reads.
type File struct {
	Path       string
	Size       int64
	Version    uint32       // 2 or 3
	Alignment  uint64       // general.alignment, or 32
	DataOffset int64        // absolute offset of the data section
	KVs        []KV         // in file order
	Tensors    []TensorInfo // in file order

	r       io.ReaderAt // what the header was read from
	data    *os.File    // Open's descriptor, closed by Close
	closed  bool
	kvIndex []int // KVs in the order of their keys
	tIndex  []int // Tensors in the order of their names up to the first NUL
}

// Open opens the GGUF file at path and reads and validates its header
// with the rules of llama.cpp's parser: every count, length, type, shape
// and offset is checked against the file size, and nothing is allocated
// from a count before the bytes behind it are read, so the memory Open
// uses follows the header's real size (arrays over MaxEagerArrayBytes are
// not even loaded). The file stays open until Close.
//
// The header is read through a small window and ReadAt and TensorReader
// read with pread, so that streaming a whole model does not leave its
// pages resident in the process nor map more address space than that:
// memory stays flat whatever the model's size.
func Open(path string) (*File, error) {
	data, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	st, err := data.Stat()
	if err != nil {
		data.Close()
		return nil, fmt.Errorf("gguf: %w", err)
	}
	if !st.Mode().IsRegular() {
		data.Close()
		return nil, fmt.Errorf("gguf: %s: not a regular file", path)
	}
	f, err := NewReader(data, st.Size())
	if err != nil {
		data.Close()
		return nil, fmt.Errorf("gguf: %s: %w", path, errors.Unwrap(err))
	}
	f.Path, f.data = path, data
	return f, nil
}

// readError is a refusal of NewReader; Open re-prefixes its cause with the
// file's path.
type readError struct{ cause error }

func (e *readError) Error() string { return "gguf: " + e.cause.Error() }
func (e *readError) Unwrap() error { return e.cause }

// NewReader reads and validates the header of the GGUF file of size bytes
// held by r, with the checks Open makes. The File reads tensor data from r,
// which must stay readable while the File is used; its Path is empty and
// Close does not close r.
func NewReader(r io.ReaderAt, size int64) (*File, error) {
	if size < 0 {
		return nil, &readError{fmt.Errorf("negative size %d", size)}
	}
	f := &File{Size: size, r: r}
	if err := f.parse(); err != nil {
		return nil, &readError{err}
	}
	return f, nil
}

// Close closes a file from Open; for a File from NewReader it only marks
// it closed. Readers obtained from the File (and ArrayRefs in its KVs)
// must not be used afterwards.
func (f *File) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	if f.data == nil {
		return nil
	}
	err := f.data.Close()
	f.data = nil
	if err != nil {
		return fmt.Errorf("gguf: %s: %w", f.Path, err)
	}
	return nil
}

// KV returns the metadata pair with the given key.
func (f *File) KV(key string) (KV, bool) {
	i, ok := slices.BinarySearchFunc(f.kvIndex, key, func(j int, k string) int { return strings.Compare(f.KVs[j].Key, k) })
	if !ok {
		return KV{}, false
	}
	return f.KVs[f.kvIndex[i]], true
}

// Tensor returns the info of the tensor with the given name.
func (f *File) Tensor(name string) (TensorInfo, bool) {
	k := nameKey(name)
	i, ok := slices.BinarySearchFunc(f.tIndex, k, func(j int, k string) int { return strings.Compare(nameKey(f.Tensors[j].Name), k) })
	if !ok || f.Tensors[f.tIndex[i]].Name != name {
		return TensorInfo{}, false
	}
	return f.Tensors[f.tIndex[i]], true
}

// TensorReader returns a reader of the tensor's bytes (unpadded).
func (f *File) TensorReader(t TensorInfo) *io.SectionReader {
	return io.NewSectionReader(f, f.DataOffset+int64(t.Offset), int64(t.Bytes()))
}

// ReadAt reads raw bytes of the file at absolute offset off.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	if f.closed {
		return 0, fmt.Errorf("gguf: %s: file is closed", f.Path)
	}
	var src io.ReaderAt = f.r
	if f.data != nil {
		src = f.data
	}
	if off < 0 {
		return 0, fmt.Errorf("gguf: %s: negative offset %d", f.Path, off)
	}
	if off >= f.Size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	if int64(len(p)) > f.Size-off {
		n, err := src.ReadAt(p[:f.Size-off], off)
		if err == nil {
			err = io.EOF
		}
		return n, err
	}
	return src.ReadAt(p, off)
}

// errShort marks a read past the end of the file.
var errShort = errors.New("unexpected end of file")

// errCap marks a length or count over MaxStringLen or MaxArrayLen; fail
// reports it as ErrLimit.
var errCap = errors.New("over the limit")

// cursorWindow is how many bytes the cursor reads from the file at once.
const cursorWindow = 64 << 10

// cursor reads little-endian values from the file through a window of
// cursorWindow bytes, checking every length against the bytes that remain.
type cursor struct {
	r      io.ReaderAt
	off    int64
	size   int64
	win    []byte // the file's bytes [winOff, winOff+len(win))
	winOff int64
	buf    []byte // backing of win, allocated on first use
	src    io.ReaderAt
}

func (c *cursor) left() uint64 { return uint64(c.size - c.off) }

// fill points the window at c.off.
func (c *cursor) fill() error {
	if c.buf == nil {
		c.buf = make([]byte, cursorWindow)
	}
	m := min(int64(len(c.buf)), c.size-c.off)
	k, err := c.r.ReadAt(c.buf[:m], c.off)
	if int64(k) < m {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("read at offset %d: %w", c.off, err)
	}
	c.win, c.winOff = c.buf[:m], c.off
	return nil
}

// fixed returns the next n (at most cursorWindow) bytes; the slice is valid
// until the next read.
func (c *cursor) fixed(n int) ([]byte, error) {
	if uint64(n) > c.left() {
		return nil, fmt.Errorf("%w at offset %d (need %d bytes, %d left)", errShort, c.off, n, c.left())
	}
	if c.off < c.winOff || c.off+int64(n) > c.winOff+int64(len(c.win)) {
		if err := c.fill(); err != nil {
			return nil, err
		}
	}
	i := c.off - c.winOff
	c.off += int64(n)
	return c.win[i : i+int64(n)], nil
}

func (c *cursor) u8() (uint8, error) {
	b, err := c.fixed(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (c *cursor) u16() (uint16, error) {
	b, err := c.fixed(2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b), nil
}

func (c *cursor) u32() (uint32, error) {
	b, err := c.fixed(4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (c *cursor) u64() (uint64, error) {
	b, err := c.fixed(8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// skip advances over n bytes, after checking that they exist.
func (c *cursor) skip(n uint64) error {
	if n > c.left() {
		return fmt.Errorf("%w at offset %d (length %d, %d bytes left)", errShort, c.off, n, c.left())
	}
	c.off += int64(n)
	return nil
}

// str reads a string: a length of at most MaxStringLen, checked against
// the bytes left before anything is allocated, and its bytes.
func (c *cursor) str() (string, error) {
	n, err := c.strLen()
	if err != nil {
		return "", err
	}
	if n <= cursorWindow {
		p, err := c.fixed(int(n))
		if err != nil {
			return "", fmt.Errorf("string: %w", err)
		}
		return string(p), nil
	}
	p := make([]byte, n)
	if k, err := c.r.ReadAt(p, c.off); uint64(k) < n {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return "", fmt.Errorf("string at offset %d: %w", c.off, err)
	}
	c.off += int64(n)
	// p is never written again: the string shares its bytes instead of
	// copying up to MaxStringLen bytes a second time.
	return unsafe.String(unsafe.SliceData(p), len(p)), nil
}

// strLen reads a string's length and checks it against MaxStringLen and
// the bytes left.
func (c *cursor) strLen() (uint64, error) {
	n, err := c.u64()
	if err != nil {
		return 0, err
	}
	if n > MaxStringLen {
		return 0, fmt.Errorf("string length %d: %w MaxStringLen of %d bytes", n, errCap, uint64(MaxStringLen))
	}
	if n > c.left() {
		return 0, fmt.Errorf("string: %w at offset %d (length %d, %d bytes left)", errShort, c.off, n, c.left())
	}
	return n, nil
}

// checkKey validates a metadata key as llama.cpp does: any bytes (UTF-8
// or not, control characters included), at most MaxStringLen of them, but
// not none. Display code escapes what is not printable.
func checkKey(s string) error {
	if len(s) == 0 {
		return errors.New("is empty")
	}
	return nil
}

// checkTensorName validates a tensor name as llama.cpp does: any bytes, at
// most MaxNameLen of them (an empty name is allowed).
func checkTensorName(s string) error {
	if len(s) > MaxNameLen {
		return fmt.Errorf("is %d bytes long, more than %d", len(s), MaxNameLen)
	}
	return nil
}

// nameKey is what makes two tensor names the same for ggml: the bytes
// before the first NUL, since ggml keeps names as C strings.
func nameKey(s string) string {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return s[:i]
	}
	return s
}

// parse reads and validates the header of f, step by step.
func (f *File) parse() error {
	c := &cursor{r: f.r, size: f.Size, src: f}
	nt, nkv, err := f.readPreamble(c)
	if err != nil {
		return err
	}
	if err := f.readKVs(c, nkv); err != nil {
		return err
	}
	if err := f.readAlignment(); err != nil {
		return err
	}
	sizes, err := f.readTensorInfos(c, nt)
	if err != nil {
		return err
	}
	return f.checkLayout(c, sizes)
}

// fail is a refusal of kind (nil: ErrTruncated when the cause is a short
// read, ErrLimit when it is a length over a limit, ErrFormat otherwise) in
// the words of format.
func fail(kind error, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	if kind == nil {
		kind = ErrFormat
		if errors.Is(err, errShort) {
			kind = ErrTruncated
		} else if errors.Is(err, errCap) {
			kind = ErrLimit
		}
	}
	return &fileError{kind: kind, err: err}
}

// readPreamble reads the magic, the version and the two counts, and
// bounds the counts by the bytes left. Nothing is allocated from the
// counts: the KVs and infos grow as they are read.
func (f *File) readPreamble(c *cursor) (nt, nkv uint64, err error) {
	if f.Size < 4 {
		return 0, 0, fail(ErrTruncated, "file of %d bytes is too short to be GGUF (truncated header)", f.Size)
	}
	m, err := c.fixed(4)
	if err != nil {
		return 0, 0, fail(ErrTruncated, "truncated header: %w", err)
	}
	if string(m) == "FUGG" {
		return 0, 0, fail(ErrFormat, "big-endian GGUF is unsupported")
	}
	if [4]byte(m) != magic {
		return 0, 0, fail(ErrFormat, "bad magic %q, not a GGUF file", m)
	}
	v, err := c.u32()
	if err != nil {
		return 0, 0, fail(ErrTruncated, "truncated header: %w", err)
	}
	switch {
	case v == 2 || v == 3:
	case v == 1:
		return 0, 0, fail(ErrFormat, "GGUF version 1 is unsupported (only versions 2 and 3)")
	case v != 0 && v&0xffff == 0:
		return 0, 0, fail(ErrFormat, "big-endian GGUF is unsupported (version field reads %#x)", v)
	default:
		return 0, 0, fail(ErrFormat, "GGUF version %d is unsupported (only versions 2 and 3)", v)
	}
	f.Version = v
	nt, err = c.u64()
	if err != nil {
		return 0, 0, fail(ErrTruncated, "truncated header: %w", err)
	}
	nkv, err = c.u64()
	if err != nil {
		return 0, 0, fail(ErrTruncated, "truncated header: %w", err)
	}
	// Early refusals only: every pair and every info takes at least that
	// many bytes, so a file that cannot hold them ends before they do.
	if nkv > c.left()/minKVBytes {
		return 0, 0, fail(ErrTruncated, "header claims %d metadata pairs, more than the %d bytes left can hold", nkv, c.left())
	}
	if nt > c.left()/minTensorBytes {
		return 0, 0, fail(ErrTruncated, "header claims %d tensors, more than the %d bytes left can hold", nt, c.left())
	}
	if nkv*minKVBytes+nt*minTensorBytes > c.left() {
		return 0, 0, fail(ErrTruncated, "header claims %d metadata pairs and %d tensors, more than the %d bytes left can hold", nkv, nt, c.left())
	}
	return nt, nkv, nil
}

// readKVs reads the metadata pairs; each key must be non-empty and unique.
func (f *File) readKVs(c *cursor, nkv uint64) error {
	f.KVs = []KV{}
	for i := uint64(0); i < nkv; i++ {
		key, err := c.str()
		if err != nil {
			return fail(nil, "metadata pair %d: key: %w", i, err)
		}
		if err := checkKey(key); err != nil {
			return fail(ErrFormat, "metadata pair %d: key %q %v", i, key, err)
		}
		val, err := readValue(c)
		if err != nil {
			return fail(nil, "key %q: %w", key, err)
		}
		f.KVs = append(f.KVs, KV{Key: key, Value: val})
	}
	var dup int
	f.kvIndex, dup = sortedIndex(len(f.KVs), func(i int) string { return f.KVs[i].Key })
	if dup >= 0 {
		return fail(ErrFormat, "duplicate key %q", f.KVs[dup].Key)
	}
	return nil
}

// sortedIndex returns the indices 0..n-1 ordered by key(i), and the
// index of the first item, in file order, whose key an earlier item
// already has (-1: none). A sorted index costs 8 bytes an item, where a
// map costs several times that: the memory of a header of millions of
// tiny KVs is mostly their own.
func sortedIndex(n int, key func(int) string) ([]int, int) {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return strings.Compare(key(a), key(b)) })
	dup := -1
	for j := 1; j < n; j++ {
		if key(idx[j]) == key(idx[j-1]) && (dup < 0 || idx[j] < dup) {
			dup = idx[j]
		}
	}
	return idx, dup
}

// readAlignment sets the alignment from general.alignment, a UINT32
// power of two, or to the default.
func (f *File) readAlignment() error {
	f.Alignment = DefaultAlignment
	if kv, ok := f.KV(AlignmentKey); ok {
		a, isU32 := kv.Value.Data.(uint32)
		if kv.Value.Type != TypeUint32 || !isU32 {
			return fail(ErrFormat, "key %q must be of type UINT32, not %s", AlignmentKey, kv.Value.Type)
		}
		if a == 0 || a&(a-1) != 0 {
			return fail(ErrFormat, "key %q: alignment %d is not a power of two", AlignmentKey, a)
		}
		f.Alignment = uint64(a)
	}
	return nil
}

// readTensorInfos reads the tensor infos and returns their byte sizes.
// Names are unique up to their first NUL, as ggml compares them.
func (f *File) readTensorInfos(c *cursor, nt uint64) ([]uint64, error) {
	f.Tensors = []TensorInfo{}
	var sizes []uint64
	for i := uint64(0); i < nt; i++ {
		t, n, err := readTensorInfo(c)
		if err != nil {
			if t.Name != "" {
				return nil, fail(nil, "tensor %q: %w", t.Name, err)
			}
			return nil, fail(nil, "tensor info %d: %w", i, err)
		}
		f.Tensors = append(f.Tensors, t)
		sizes = append(sizes, n)
	}
	var dup int
	f.tIndex, dup = sortedIndex(len(f.Tensors), func(i int) string { return nameKey(f.Tensors[i].Name) })
	if dup >= 0 {
		name := f.Tensors[dup].Name
		first := f.Tensors[f.tIndex[slices.IndexFunc(f.tIndex, func(j int) bool { return nameKey(f.Tensors[j].Name) == nameKey(name) })]].Name
		if first == name {
			return nil, fail(ErrFormat, "duplicate tensor name %q", name)
		}
		return nil, fail(ErrFormat, "duplicate tensor name %q: ggml reads it as %q, the name of tensor %q", name, nameKey(name), first)
	}
	return sizes, nil
}

// checkLayout places the data section after the infos and checks every
// tensor's offset: it must be the running sum of the sizes before it, each
// padded to the alignment (llama.cpp refuses any other offset, and a
// corrupted type or shape shows up as exactly such a gap), and the data
// must lie inside the file.
func (f *File) checkLayout(c *cursor, sizes []uint64) error {
	// The data section starts at the first multiple of the alignment after
	// the infos (c.off < 2^63 and the alignment <= 2^31: no overflow).
	// With tensors the padding must be present, as llama.cpp requires; a
	// file without tensors may end right after its infos.
	f.DataOffset = int64(alignUp(uint64(c.off), f.Alignment))
	if f.DataOffset > f.Size {
		if len(f.Tensors) == 0 {
			f.DataOffset = c.off
			return nil
		}
		return fail(ErrTruncated, "data section at offset %d (infos end at %d, alignment %d) starts past the end of the file (%d bytes)", f.DataOffset, c.off, f.Alignment, f.Size)
	}
	dataLen := uint64(f.Size - f.DataOffset)
	want := uint64(0)
	for i, t := range f.Tensors {
		n := sizes[i]
		if t.Offset != want {
			return fail(ErrOffset, "tensor %q: offset %d, expected %d (the sizes of the tensors before it, each padded to the alignment %d)", t.Name, t.Offset, want, f.Alignment)
		}
		if t.Offset > dataLen || n > dataLen-t.Offset {
			return fail(ErrOffset, "tensor %q: data [%d, +%d) extends past the end of the file (data section holds %d bytes)", t.Name, t.Offset, n, dataLen)
		}
		// n <= dataLen < 2^63 here, so neither the padding nor the sum
		// overflows.
		want += alignUp(n, f.Alignment)
	}
	return nil
}

func alignUp(n, a uint64) uint64 { return (n + a - 1) &^ (a - 1) }

// readTensorInfo reads one tensor info and validates its name, shape and
// type; it returns the info and its byte size. On error the returned info
// carries the name when it was read.
func readTensorInfo(c *cursor) (TensorInfo, uint64, error) {
	var t TensorInfo
	name, err := c.str()
	if err != nil {
		return t, 0, fmt.Errorf("name: %w", err)
	}
	if err := checkTensorName(name); err != nil {
		return t, 0, fmt.Errorf("name %q %v", name, err)
	}
	t.Name = name
	nd, err := c.u32()
	if err != nil {
		return t, 0, err
	}
	if nd > MaxDims {
		return t, 0, fmt.Errorf("has %d dimensions, want at most %d", nd, MaxDims)
	}
	var shape [MaxDims]uint64
	for j := range nd {
		if shape[j], err = c.u64(); err != nil {
			return t, 0, err
		}
	}
	if nd > 0 {
		t.Shape = append([]uint64(nil), shape[:nd]...)
	}
	ty, err := c.u32()
	if err != nil {
		return t, 0, err
	}
	t.Type = Type(ty)
	if t.Offset, err = c.u64(); err != nil {
		return t, 0, err
	}
	n, err := t.size()
	if err != nil {
		return t, 0, err
	}
	return t, n, nil
}

// readValue reads a value type id and the value that follows.
func readValue(c *cursor) (Value, error) {
	ty, err := c.u32()
	if err != nil {
		return Value{}, err
	}
	vt := ValueType(ty)
	if vt != TypeArray {
		if !vt.Valid() {
			return Value{}, fmt.Errorf("unknown value type id %d", ty)
		}
		v, err := readScalar(c, vt)
		if err != nil {
			return Value{}, fmt.Errorf("%s value: %w", vt, err)
		}
		return v, nil
	}
	et, err := c.u32()
	if err != nil {
		return Value{}, err
	}
	elem := ValueType(et)
	if elem == TypeArray {
		return Value{}, errors.New("nested arrays are unsupported")
	}
	if !elem.Valid() {
		return Value{}, fmt.Errorf("array of unknown value type id %d", et)
	}
	n, err := c.u64()
	if err != nil {
		return Value{}, err
	}
	v, err := readArray(c, elem, n)
	if err != nil {
		return Value{}, fmt.Errorf("array of %d %s: %w", n, elem, err)
	}
	return v, nil
}

func readScalar(c *cursor, t ValueType) (Value, error) {
	var d any
	var err error
	switch t {
	case TypeUint8:
		d, err = c.u8()
	case TypeInt8:
		var v uint8
		v, err = c.u8()
		d = int8(v)
	case TypeUint16:
		d, err = c.u16()
	case TypeInt16:
		var v uint16
		v, err = c.u16()
		d = int16(v)
	case TypeUint32:
		d, err = c.u32()
	case TypeInt32:
		var v uint32
		v, err = c.u32()
		d = int32(v)
	case TypeFloat32:
		var v uint32
		v, err = c.u32()
		d = math.Float32frombits(v)
	case TypeBool:
		// ggml reads any nonzero byte as true; the byte itself is kept so
		// that the writer puts back what was read.
		var b uint8
		if b, err = c.u8(); err != nil {
			return Value{}, err
		}
		v := Value{Type: TypeBool, Data: b != 0}
		if b > 1 {
			v.raw = &[]byte{b}
		}
		return v, nil
	case TypeString:
		d, err = c.str()
	case TypeUint64:
		d, err = c.u64()
	case TypeInt64:
		var v uint64
		v, err = c.u64()
		d = int64(v)
	case TypeFloat64:
		var v uint64
		v, err = c.u64()
		d = math.Float64frombits(v)
	default:
		return Value{}, fmt.Errorf("unknown value type id %d", uint32(t))
	}
	if err != nil {
		return Value{}, err
	}
	return Value{Type: t, Data: d}, nil
}

// readArray reads n elements of type t. The count is checked against
// MaxArrayLen and the bytes left before anything is allocated: fixed-size
// elements must all fit, and strings take at least 8 bytes each. An array
// whose elements take more than MaxEagerArrayBytes stays in the file as an
// *ArrayRef; smaller ones are decoded into a slice.
func readArray(c *cursor, t ValueType, n uint64) (Value, error) {
	if n > MaxArrayLen {
		return Value{}, fmt.Errorf("count %w MaxArrayLen of %d elements", errCap, uint64(MaxArrayLen))
	}
	start := c.off
	if t == TypeString {
		if n > c.left()/8 {
			return Value{}, fmt.Errorf("count exceeds the %d bytes left", c.left())
		}
		// First pass: check every length, without keeping anything.
		for i := uint64(0); i < n; i++ {
			k, err := c.strLen()
			if err == nil {
				err = c.skip(k)
			}
			if err != nil {
				return Value{}, fmt.Errorf("element %d: %w", i, err)
			}
		}
		size := uint64(c.off - start)
		if size > MaxEagerArrayBytes {
			return Value{Type: TypeArray, Elem: t, Data: &ArrayRef{src: c.src, off: start, size: int64(size), n: n, elem: t}}, nil
		}
		c.off = start
		out := make([]string, 0, min(n, 1024))
		for i := uint64(0); i < n; i++ {
			s, err := c.str()
			if err != nil {
				return Value{}, fmt.Errorf("element %d: %w", i, err)
			}
			out = append(out, s)
		}
		return Value{Type: TypeArray, Elem: t, Data: out}, nil
	}
	es := uint64(t.scalarSize())
	if n > c.left()/es {
		return Value{}, fmt.Errorf("count of %d-byte elements exceeds the %d bytes left", es, c.left())
	}
	if n*es > MaxEagerArrayBytes {
		c.off += int64(n * es)
		return Value{Type: TypeArray, Elem: t, Data: &ArrayRef{src: c.src, off: start, size: int64(n * es), n: n, elem: t}}, nil
	}
	p := make([]byte, n*es)
	for i := 0; i < len(p); {
		k := min(len(p)-i, cursorWindow)
		b, err := c.fixed(k)
		if err != nil {
			return Value{}, err
		}
		i += copy(p[i:], b)
	}
	return decodeArray(t, p), nil
}
