package gguf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"unicode/utf8"

	"golang.org/x/exp/mmap"
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
	MaxKeyLen = 1<<16 - 1
	// MaxDims is the largest number of tensor dimensions.
	MaxDims = 4
)

var magic = [4]byte{'G', 'G', 'U', 'F'}

// Minimum encoded sizes, used to bound counts by the bytes that remain.
const (
	minKVBytes     = 8 + 1 + 4 + 1         // key length, 1-byte key, type, 1-byte value
	minTensorBytes = 8 + 1 + 4 + 8 + 4 + 8 // name length, 1-byte name, n_dims, ne[0], type, offset
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

// size validates the type and shape of t and returns its byte size.
func (t TensorInfo) size() (uint64, error) {
	if len(t.Shape) < 1 || len(t.Shape) > MaxDims {
		return 0, fmt.Errorf("has %d dimensions, want 1 to %d", len(t.Shape), MaxDims)
	}
	ti, ok := t.Type.Info()
	if !ok {
		return 0, fmt.Errorf("has unknown type id %d", uint32(t.Type))
	}
	elems := uint64(1)
	for i, d := range t.Shape {
		if d > math.MaxInt64 {
			return 0, fmt.Errorf("dimension %d has %d elements, more than the int64 limit", i, d)
		}
		hi, lo := bits.Mul64(elems, d)
		if hi != 0 || lo > math.MaxInt64 {
			return 0, fmt.Errorf("shape %v: element count overflows int64", t.Shape)
		}
		elems = lo
	}
	ne0 := t.Shape[0]
	if ne0%uint64(ti.BlockSize) != 0 {
		return 0, fmt.Errorf("type %s: ne[0]=%d is not divisible by the block size %d", ti.Name, ne0, ti.BlockSize)
	}
	if elems == 0 {
		return 0, nil
	}
	rows := elems / ne0
	hi, rowBytes := bits.Mul64(ne0/uint64(ti.BlockSize), uint64(ti.BlockBytes))
	if hi != 0 {
		return 0, fmt.Errorf("shape %v: row size overflows", t.Shape)
	}
	hi, lo := bits.Mul64(rows, rowBytes)
	if hi != 0 || lo > math.MaxInt64 {
		return 0, fmt.Errorf("shape %v: byte size overflows int64", t.Shape)
	}
	return lo, nil
}

// File is an open, memory-mapped GGUF file; it is safe for concurrent reads.
type File struct {
	Path       string
	Size       int64
	Version    uint32       // 2 or 3
	Alignment  uint64       // general.alignment, or 32
	DataOffset int64        // absolute offset of the data section
	KVs        []KV         // in file order
	Tensors    []TensorInfo // in file order

	r       io.ReaderAt    // what the header was read from
	mapping *mmap.ReaderAt // Open's mapping, closed by Close
	data    *os.File       // Open's descriptor of the same file, for tensor reads
	closed  bool
	kvIndex map[string]int
	tIndex  map[string]int
}

// Open memory-maps the GGUF file at path and reads and validates its header:
// every count, length, type, shape and offset is checked against the file
// size before anything is allocated. The file stays mapped until Close.
//
// The header is parsed from the mapping; ReadAt and TensorReader read with
// pread on a read-only descriptor of the same file instead, so that
// streaming a whole model does not leave its pages resident in the process:
// memory stays flat whatever the model's size.
func Open(path string) (*File, error) {
	r, err := mmap.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	data, err := os.Open(path)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("gguf: %w", err)
	}
	f, err := NewReader(r, int64(r.Len()))
	if err != nil {
		r.Close()
		data.Close()
		return nil, fmt.Errorf("gguf: %s: %w", path, errors.Unwrap(err))
	}
	f.Path, f.mapping, f.data = path, r, data
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

// Close unmaps a file from Open; for a File from NewReader it only marks
// it closed. Readers obtained from the File must not be used afterwards.
func (f *File) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	if f.mapping == nil {
		return nil
	}
	err := f.mapping.Close()
	if err2 := f.data.Close(); err == nil {
		err = err2
	}
	f.mapping, f.data = nil, nil
	if err != nil {
		return fmt.Errorf("gguf: %s: %w", f.Path, err)
	}
	return nil
}

// KV returns the metadata pair with the given key.
func (f *File) KV(key string) (KV, bool) {
	i, ok := f.kvIndex[key]
	if !ok {
		return KV{}, false
	}
	return f.KVs[i], true
}

// Tensor returns the info of the tensor with the given name.
func (f *File) Tensor(name string) (TensorInfo, bool) {
	i, ok := f.tIndex[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.Tensors[i], true
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

// cursor reads little-endian values from the mapping, checking every length
// against the bytes that remain.
type cursor struct {
	r    io.ReaderAt
	off  int64
	size int64
	buf  [8]byte
}

func (c *cursor) left() uint64 { return uint64(c.size - c.off) }

func (c *cursor) fixed(n int) ([]byte, error) {
	if uint64(n) > c.left() {
		return nil, fmt.Errorf("%w at offset %d (need %d bytes, %d left)", errShort, c.off, n, c.left())
	}
	if _, err := c.r.ReadAt(c.buf[:n], c.off); err != nil {
		return nil, err
	}
	c.off += int64(n)
	return c.buf[:n], nil
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

// bytes reads n bytes into a new slice, after checking that they exist.
func (c *cursor) bytes(n uint64) ([]byte, error) {
	if n > c.left() {
		return nil, fmt.Errorf("%w at offset %d (length %d, %d bytes left)", errShort, c.off, n, c.left())
	}
	p := make([]byte, n)
	if _, err := c.r.ReadAt(p, c.off); err != nil {
		return nil, err
	}
	c.off += int64(n)
	return p, nil
}

func (c *cursor) str() (string, error) {
	n, err := c.u64()
	if err != nil {
		return "", err
	}
	p, err := c.bytes(n)
	if err != nil {
		return "", fmt.Errorf("string: %w", err)
	}
	return string(p), nil
}

// bool reads a BOOL, which must be 0 or 1.
func (c *cursor) bool() (bool, error) {
	b, err := c.u8()
	if err != nil {
		return false, err
	}
	if b > 1 {
		return false, fmt.Errorf("bool byte %d at offset %d is neither 0 nor 1", b, c.off-1)
	}
	return b == 1, nil
}

// checkName validates a key (maxLen MaxKeyLen) or tensor name (MaxNameLen).
func checkName(s string, maxLen int) error {
	if len(s) == 0 {
		return errors.New("is empty")
	}
	if len(s) > maxLen {
		return fmt.Errorf("is %d bytes long, more than %d", len(s), maxLen)
	}
	if !utf8.ValidString(s) {
		return errors.New("is not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("contains control character %U", r)
		}
	}
	return nil
}

// parse reads and validates the header of f, step by step.
func (f *File) parse() error {
	c := &cursor{r: f.r, size: f.Size}
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
// read, ErrFormat otherwise) in the words of format.
func fail(kind error, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	if kind == nil {
		kind = ErrFormat
		if errors.Is(err, errShort) {
			kind = ErrTruncated
		}
	}
	return &fileError{kind: kind, err: err}
}

// readPreamble reads the magic, the version and the two counts, and
// bounds the counts by the bytes left.
func (f *File) readPreamble(c *cursor) (nt, nkv uint64, err error) {
	if f.Size < 4 {
		return 0, 0, fail(ErrTruncated, "file of %d bytes is too short to be GGUF (truncated header)", f.Size)
	}
	m, _ := c.fixed(4)
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

// readKVs reads the metadata pairs; each key must be valid and unique.
func (f *File) readKVs(c *cursor, nkv uint64) error {
	f.KVs = make([]KV, 0, nkv)
	f.kvIndex = make(map[string]int, nkv)
	for i := uint64(0); i < nkv; i++ {
		key, err := c.str()
		if err != nil {
			return fail(nil, "metadata pair %d: key: %w", i, err)
		}
		if err := checkName(key, MaxKeyLen); err != nil {
			return fail(ErrFormat, "metadata pair %d: key %q %v", i, key, err)
		}
		if _, dup := f.kvIndex[key]; dup {
			return fail(ErrFormat, "duplicate key %q", key)
		}
		val, err := readValue(c)
		if err != nil {
			return fail(nil, "key %q: %w", key, err)
		}
		f.kvIndex[key] = len(f.KVs)
		f.KVs = append(f.KVs, KV{Key: key, Value: val})
	}

	return nil
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
func (f *File) readTensorInfos(c *cursor, nt uint64) ([]uint64, error) {
	f.Tensors = make([]TensorInfo, 0, nt)
	f.tIndex = make(map[string]int, nt)
	sizes := make([]uint64, 0, nt)
	for i := uint64(0); i < nt; i++ {
		t, n, err := readTensorInfo(c)
		if err != nil {
			if t.Name != "" {
				return nil, fail(nil, "tensor %q: %w", t.Name, err)
			}
			return nil, fail(nil, "tensor info %d: %w", i, err)
		}
		if _, dup := f.tIndex[t.Name]; dup {
			return nil, fail(ErrFormat, "duplicate tensor name %q", t.Name)
		}
		f.tIndex[t.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, t)
		sizes = append(sizes, n)
	}

	return sizes, nil
}

// checkLayout places the data section after the infos and checks every
// tensor's offset: aligned, in order, not overlapping, inside the file.
func (f *File) checkLayout(c *cursor, sizes []uint64) error {
	// The data section starts at the first multiple of the alignment after
	// the infos (c.off < 2^63 and the alignment <= 2^31: no overflow).
	// Writers (ggml, gguf-py, ours) pad the infos even without tensors, so
	// the padding must be present; this also bounds what a rewrite writes.
	f.DataOffset = int64(alignUp(uint64(c.off), f.Alignment))
	if f.DataOffset > f.Size {
		return fail(ErrTruncated, "data section at offset %d (infos end at %d, alignment %d) starts past the end of the file (%d bytes)", f.DataOffset, c.off, f.Alignment, f.Size)
	}
	dataLen := uint64(f.Size - f.DataOffset)
	prevEnd := uint64(0)
	for i, t := range f.Tensors {
		n := sizes[i]
		if t.Offset%f.Alignment != 0 {
			return fail(ErrOffset, "tensor %q: offset %d is not a multiple of the alignment %d", t.Name, t.Offset, f.Alignment)
		}
		if t.Offset < prevEnd {
			if i > 0 && t.Offset < f.Tensors[i-1].Offset {
				return fail(ErrOffset, "tensor %q: offset %d is out of order (before tensor %q at %d)", t.Name, t.Offset, f.Tensors[i-1].Name, f.Tensors[i-1].Offset)
			}
			return fail(ErrOffset, "tensor %q: offset %d overlaps tensor %q, which ends at %d", t.Name, t.Offset, f.Tensors[i-1].Name, prevEnd)
		}
		if t.Offset > dataLen || n > dataLen-t.Offset {
			return fail(ErrOffset, "tensor %q: data [%d, +%d) extends past the end of the file (data section holds %d bytes)", t.Name, t.Offset, n, dataLen)
		}
		prevEnd = t.Offset + n
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
	if err := checkName(name, MaxNameLen); err != nil {
		return t, 0, fmt.Errorf("name %q %v", name, err)
	}
	t.Name = name
	nd, err := c.u32()
	if err != nil {
		return t, 0, err
	}
	if nd < 1 || nd > MaxDims {
		return t, 0, fmt.Errorf("has %d dimensions, want 1 to %d", nd, MaxDims)
	}
	var shape [MaxDims]uint64
	for j := range nd {
		if shape[j], err = c.u64(); err != nil {
			return t, 0, err
		}
	}
	t.Shape = append([]uint64(nil), shape[:nd]...)
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
		d, err := readScalar(c, vt)
		if err != nil {
			return Value{}, fmt.Errorf("%s value: %w", vt, err)
		}
		return Value{Type: vt, Data: d}, nil
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
	d, err := readArray(c, elem, n)
	if err != nil {
		return Value{}, fmt.Errorf("array of %d %s: %w", n, elem, err)
	}
	return Value{Type: TypeArray, Elem: elem, Data: d}, nil
}

func readScalar(c *cursor, t ValueType) (any, error) {
	switch t {
	case TypeUint8:
		return c.u8()
	case TypeInt8:
		v, err := c.u8()
		return int8(v), err
	case TypeUint16:
		return c.u16()
	case TypeInt16:
		v, err := c.u16()
		return int16(v), err
	case TypeUint32:
		return c.u32()
	case TypeInt32:
		v, err := c.u32()
		return int32(v), err
	case TypeFloat32:
		v, err := c.u32()
		return math.Float32frombits(v), err
	case TypeBool:
		return c.bool()
	case TypeString:
		return c.str()
	case TypeUint64:
		return c.u64()
	case TypeInt64:
		v, err := c.u64()
		return int64(v), err
	case TypeFloat64:
		v, err := c.u64()
		return math.Float64frombits(v), err
	}
	return nil, fmt.Errorf("unknown value type id %d", uint32(t))
}

// readArray reads n elements of type t. The count is checked against the
// bytes left before anything is allocated: fixed-size elements must all fit,
// and strings take at least 8 bytes each.
func readArray(c *cursor, t ValueType, n uint64) (any, error) {
	if t == TypeString {
		if n > c.left()/8 {
			return nil, fmt.Errorf("count exceeds the %d bytes left", c.left())
		}
		// Grow while reading, so memory follows the strings actually present.
		out := make([]string, 0, min(n, 1024))
		for i := uint64(0); i < n; i++ {
			s, err := c.str()
			if err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
			out = append(out, s)
		}
		return out, nil
	}
	es := uint64(t.scalarSize())
	if n > c.left()/es {
		return nil, fmt.Errorf("count of %d-byte elements exceeds the %d bytes left", es, c.left())
	}
	raw := make([]byte, 4096)
	var out any
	switch t {
	case TypeUint8:
		p, err := c.bytes(n)
		return p, err
	case TypeInt8:
		out = make([]int8, n)
	case TypeBool:
		out = make([]bool, n)
	case TypeUint16:
		out = make([]uint16, n)
	case TypeInt16:
		out = make([]int16, n)
	case TypeUint32:
		out = make([]uint32, n)
	case TypeInt32:
		out = make([]int32, n)
	case TypeFloat32:
		out = make([]float32, n)
	case TypeUint64:
		out = make([]uint64, n)
	case TypeInt64:
		out = make([]int64, n)
	case TypeFloat64:
		out = make([]float64, n)
	}
	le := binary.LittleEndian
	for i := uint64(0); i < n; {
		k := min(n-i, uint64(len(raw))/es)
		p := raw[:k*es]
		if _, err := c.r.ReadAt(p, c.off); err != nil {
			return nil, err
		}
		for j := uint64(0); j < k; j++ {
			switch o := out.(type) {
			case []int8:
				o[i+j] = int8(p[j])
			case []bool:
				if p[j] > 1 {
					return nil, fmt.Errorf("element %d: bool byte %d is neither 0 nor 1", i+j, p[j])
				}
				o[i+j] = p[j] == 1
			case []uint16:
				o[i+j] = le.Uint16(p[2*j:])
			case []int16:
				o[i+j] = int16(le.Uint16(p[2*j:]))
			case []uint32:
				o[i+j] = le.Uint32(p[4*j:])
			case []int32:
				o[i+j] = int32(le.Uint32(p[4*j:]))
			case []float32:
				o[i+j] = math.Float32frombits(le.Uint32(p[4*j:]))
			case []uint64:
				o[i+j] = le.Uint64(p[8*j:])
			case []int64:
				o[i+j] = int64(le.Uint64(p[8*j:]))
			case []float64:
				o[i+j] = math.Float64frombits(le.Uint64(p[8*j:]))
			}
		}
		c.off += int64(len(p))
		i += k
	}
	return out, nil
}
