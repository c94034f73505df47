package gguf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// rawKV is a metadata pair encoded by hand: rawKey, when set, replaces the
// encoded key; val is everything after the type id.
type rawKV struct {
	key    string
	rawKey []byte
	typ    uint32
	val    []byte
}

// rawTI is a tensor info encoded by hand; nd < 0 means len(dims).
type rawTI struct {
	name    string
	rawName []byte // replaces the encoded name when set
	nd      int
	dims    []uint64
	typ     uint32
	off     uint64
}

// rawFile builds GGUF bytes with any field set to any value.
type rawFile struct {
	magic   string
	version uint32
	nt, nkv *uint64 // override the counts
	kvs     []rawKV
	tis     []rawTI
	align   uint64 // padding before the data
	data    []byte
}

func (r *rawFile) bytes() []byte {
	b := []byte(r.magic)
	b = appendU32(b, r.version)
	nt, nkv := uint64(len(r.tis)), uint64(len(r.kvs))
	if r.nt != nil {
		nt = *r.nt
	}
	if r.nkv != nil {
		nkv = *r.nkv
	}
	b = appendU64(b, nt)
	b = appendU64(b, nkv)
	for _, kv := range r.kvs {
		if kv.rawKey != nil {
			b = append(b, kv.rawKey...)
		} else {
			b = appendString(b, kv.key)
		}
		b = appendU32(b, kv.typ)
		b = append(b, kv.val...)
	}
	for _, ti := range r.tis {
		if ti.rawName != nil {
			b = append(b, ti.rawName...)
		} else {
			b = appendString(b, ti.name)
		}
		nd := ti.nd
		if nd < 0 {
			nd = len(ti.dims)
		}
		b = appendU32(b, uint32(nd))
		for _, d := range ti.dims {
			b = appendU64(b, d)
		}
		b = appendU32(b, ti.typ)
		b = appendU64(b, ti.off)
	}
	for uint64(len(b))%r.align != 0 {
		b = append(b, 0)
	}
	return append(b, r.data...)
}

func u32b(v uint32) []byte { return appendU32(nil, v) }
func u64b(v uint64) []byte { return appendU64(nil, v) }
func strb(s string) []byte { return appendString(nil, s) }
func ptr[T any](v T) *T    { return &v }
func cat(bs ...[]byte) []byte {
	var o []byte
	for _, b := range bs {
		o = append(o, b...)
	}
	return o
}
func arrb(elem uint32, n uint64, items ...[]byte) []byte {
	return cat(u32b(elem), u64b(n), cat(items...))
}

// validRaw is a small valid file: two F32 tensors (64 and 32 bytes) in a
// 96-byte data section that ends with the last tensor, alignment 32.
func validRaw() *rawFile {
	data := make([]byte, 96)
	for i := range data {
		data[i] = byte(i)
	}
	return &rawFile{
		magic: "GGUF", version: 3, align: 32,
		kvs: []rawKV{
			{key: "general.architecture", typ: 8, val: strb("llama")},
			{key: AlignmentKey, typ: 4, val: u32b(32)},
			{key: "tokenizer.ggml.tokens", typ: 9, val: arrb(8, 3, strb("a"), strb("b"), strb("c"))},
		},
		tis: []rawTI{
			{name: "t0", nd: -1, dims: []uint64{8, 2}, typ: 0, off: 0},
			{name: "t1", nd: -1, dims: []uint64{8}, typ: 0, off: 64},
		},
		data: data,
	}
}

type hostileCase struct {
	name   string
	mutate func(r *rawFile)
	want   string // a word the error must contain
}

func hostileCases() []hostileCase {
	setKV := func(i int, kv rawKV) func(*rawFile) { return func(r *rawFile) { r.kvs[i] = kv } }
	setTI := func(i int, f func(*rawTI)) func(*rawFile) { return func(r *rawFile) { f(&r.tis[i]) } }
	return []hostileCase{
		{"bad-magic", func(r *rawFile) { r.magic = "GGUX" }, "magic"},
		{"ggml-magic", func(r *rawFile) { r.magic = "lmgg" }, "magic"},
		{"version-0", func(r *rawFile) { r.version = 0 }, "version 0"},
		{"version-1", func(r *rawFile) { r.version = 1 }, "version 1"},
		{"version-4", func(r *rawFile) { r.version = 4 }, "version 4"},
		{"big-endian-version", func(r *rawFile) { r.version = 3 << 24 }, "big-endian"},
		{"big-endian-magic", func(r *rawFile) { r.magic = "FUGG"; r.version = 3 << 24 }, "big-endian"},
		{"huge-kv-count", func(r *rawFile) { r.nkv = ptr(uint64(1) << 60) }, "metadata pairs"},
		{"max-kv-count", func(r *rawFile) { r.nkv = ptr(^uint64(0)) }, "metadata pairs"},
		{"huge-tensor-count", func(r *rawFile) { r.nt = ptr(uint64(1) << 60) }, "tensors"},
		{"max-tensor-count", func(r *rawFile) { r.nt = ptr(^uint64(0)) }, "tensors"},
		{"kv-count-too-high", func(r *rawFile) { r.nkv = ptr(uint64(4)) }, "MaxStringLen"},
		{"huge-key-length", setKV(0, rawKV{rawKey: cat(u64b(1<<62), []byte("general")), typ: 8, val: strb("x")}), "length"},
		{"max-key-length", setKV(0, rawKV{rawKey: cat(u64b(^uint64(0)), []byte("general")), typ: 8, val: strb("x")}), "length"},
		{"empty-key", setKV(0, rawKV{key: "", typ: 8, val: strb("x")}), "empty"},
		{"huge-string-length", setKV(0, rawKV{key: "general.architecture", typ: 8, val: cat(u64b(1<<62), []byte("llama"))}), "string"},
		{"huge-array-count", setKV(2, rawKV{key: "a", typ: 9, val: arrb(4, 1<<60)}), "array"},
		{"max-array-count", setKV(2, rawKV{key: "a", typ: 9, val: arrb(12, ^uint64(0))}), "array"},
		{"huge-string-array-count", setKV(2, rawKV{key: "a", typ: 9, val: arrb(8, 1<<59, strb("a"))}), "array"},
		{"string-array-element-too-long", setKV(2, rawKV{key: "a", typ: 9, val: arrb(8, 2, strb("a"), u64b(1<<40))}), "element 1"},
		{"nested-array", setKV(2, rawKV{key: "a", typ: 9, val: arrb(9, 1, arrb(4, 1, u32b(1)))}), "nested"},
		{"unknown-value-type", setKV(2, rawKV{key: "a", typ: 13, val: u32b(1)}), "unknown value type"},
		{"unknown-array-type", setKV(2, rawKV{key: "a", typ: 9, val: arrb(99, 1, u32b(1))}), "unknown value type"},
		{"duplicate-key", setKV(2, rawKV{key: "general.architecture", typ: 8, val: strb("x")}), "duplicate key"},
		{"alignment-0", setKV(1, rawKV{key: AlignmentKey, typ: 4, val: u32b(0)}), "power of two"},
		{"alignment-3", setKV(1, rawKV{key: AlignmentKey, typ: 4, val: u32b(3)}), "power of two"},
		{"alignment-uint64", setKV(1, rawKV{key: AlignmentKey, typ: 10, val: u64b(32)}), "UINT32"},
		{"alignment-string", setKV(1, rawKV{key: AlignmentKey, typ: 8, val: strb("32")}), "UINT32"},
		{"offset-past-end", setTI(1, func(t *rawTI) { t.off = 1 << 40 }), "expected 64"},
		{"offset-max", setTI(1, func(t *rawTI) { t.off = ^uint64(0) &^ 31 }), "expected 64"},
		{"offset-gap", setTI(1, func(t *rawTI) { t.off = 128 }), "expected 64"},
		{"misaligned-offset", setTI(1, func(t *rawTI) { t.off = 65 }), "expected 64"},
		{"overlapping", setTI(1, func(t *rawTI) { t.off = 32 }), "expected 64"},
		{"out-of-order", func(r *rawFile) { r.tis[0].off = 32; r.tis[1].off = 0 }, "expected 0"},
		{"data-past-end", func(r *rawFile) { r.data = r.data[:80] }, "past the end"},
		{"type-corrupted", setTI(0, func(t *rawTI) { t.typ = uint32(TypeF16) }), "expected 32"},
		{"nul-name-duplicate", setTI(1, func(t *rawTI) { t.name = "t0\x00x" }), "duplicate tensor"},
		{"string-over-cap", setKV(0, rawKV{key: "general.architecture", typ: 8, val: cat(u64b(MaxStringLen+1), []byte("llama"))}), "MaxStringLen"},
		{"array-over-cap", setKV(2, rawKV{key: "a", typ: 9, val: arrb(0, MaxArrayLen+1)}), "MaxArrayLen"},
		{"element-count-wraps-to-0", setTI(1, func(t *rawTI) { t.dims = []uint64{512, 1 << 62} }), "overflow"},
		{"duplicate-tensor", setTI(1, func(t *rawTI) { t.name = "t0" }), "duplicate tensor"},
		{"removed-type-id", setTI(1, func(t *rawTI) { t.typ = 4 }), "unknown type"},
		{"unknown-type-id", setTI(1, func(t *rawTI) { t.typ = 1 << 31 }), "unknown type"},
		{"5-dims", setTI(1, func(t *rawTI) { t.dims = []uint64{8, 1, 1, 1, 1} }), "dimensions"},
		{"huge-dims", setTI(1, func(t *rawTI) { t.nd = 1 << 30 }), "dimensions"},
		{"64-byte-name", setTI(1, func(t *rawTI) { t.name = strings.Repeat("n", 64) }), "64 bytes"},
		{"huge-name-length", setTI(1, func(t *rawTI) { t.rawName = cat(u64b(1<<62), []byte("t1")) }), "length"},
		{"block-size", setTI(1, func(t *rawTI) { t.typ = uint32(TypeQ4_0); t.dims = []uint64{33} }), "block size"},
		{"element-overflow", setTI(1, func(t *rawTI) { t.dims = []uint64{1 << 32, 1 << 32} }), "overflow"},
		{"element-overflow-4d", setTI(1, func(t *rawTI) { t.dims = []uint64{1 << 16, 1 << 16, 1 << 16, 1 << 16} }), "overflow"},
		{"dim-over-int64", setTI(1, func(t *rawTI) { t.dims = []uint64{1 << 63} }), "int64"},
		{"byte-overflow", setTI(1, func(t *rawTI) { t.typ = uint32(TypeF64); t.dims = []uint64{1 << 61} }), "overflow"},
		{"2^60-elements", setTI(1, func(t *rawTI) { t.dims = []uint64{1 << 30, 1 << 30} }), "past the end"},
		{"2^60-q4_k", setTI(1, func(t *rawTI) { t.typ = uint32(TypeQ4_K); t.dims = []uint64{1 << 40, 1 << 20} }), "past the end"},
		{"data-start-past-end", func(r *rawFile) { r.data = nil; r.align = 1 }, "past the end"},
	}
}

// openHostile writes b to dir/name.gguf and opens it, returning the error
// and the bytes allocated by Open.
func openHostile(t *testing.T, dir, name string, b []byte) (string, error, uint64) {
	t.Helper()
	path := filepath.Join(dir, name+".gguf")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f, err := Open(path)
	runtime.ReadMemStats(&after)
	if err == nil {
		f.Close()
	}
	return path, err, after.TotalAlloc - before.TotalAlloc
}

const allocLimit = 1 << 20

func TestValidRaw(t *testing.T) {
	dir := t.TempDir()
	path, err, _ := openHostile(t, dir, "valid", validRaw().bytes())
	if err != nil {
		t.Fatalf("the base of the hostile corpus does not open: %v", err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if len(f.Tensors) != 2 || f.Tensors[1].Offset != 64 || f.Tensors[1].Bytes() != 32 {
		t.Fatalf("unexpected tensors %+v", f.Tensors)
	}
}

func TestHostile(t *testing.T) {
	dir := t.TempDir()
	for _, c := range hostileCases() {
		t.Run(c.name, func(t *testing.T) {
			r := validRaw()
			c.mutate(r)
			b := r.bytes()
			path, err, alloc := openHostile(t, dir, c.name, b)
			if err == nil {
				t.Fatalf("%d-byte file opened without error", len(b))
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "gguf: ") || !strings.Contains(msg, path) || !strings.Contains(msg, c.want) {
				t.Fatalf("error %q: want prefix \"gguf: \", the path and %q", msg, c.want)
			}
			if alloc > allocLimit {
				t.Fatalf("Open of a %d-byte file allocated %d bytes", len(b), alloc)
			}
		})
	}
}

// TestHostileNamesTensor checks that tensor errors name the tensor and key
// errors the key.
func TestHostileNamesTensor(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ name, want string }{
		{"misaligned-offset", `"t1"`}, {"block-size", `"t1"`}, {"element-overflow", `"t1"`},
		{"unknown-type-id", `"t1"`}, {"nested-array", `"a"`}, {"huge-string-length", `"general.architecture"`},
	} {
		for _, hc := range hostileCases() {
			if hc.name != c.name {
				continue
			}
			r := validRaw()
			hc.mutate(r)
			_, err, _ := openHostile(t, dir, c.name, r.bytes())
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: error %v does not name %s", c.name, err, c.want)
			}
		}
	}
}

// TestTruncated cuts a valid file at every byte of the header region and at
// several points inside the data: each must fail cleanly.
func TestTruncated(t *testing.T) {
	dir := t.TempDir()
	full := validRaw().bytes()
	base, err, _ := openHostile(t, dir, "full", full)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(base)
	if err != nil {
		t.Fatal(err)
	}
	dataOff := int(f.DataOffset)
	f.Close()
	var cuts []int
	for n := 0; n <= dataOff; n++ {
		cuts = append(cuts, n)
	}
	cuts = append(cuts, dataOff+1, dataOff+31, dataOff+63, dataOff+64, dataOff+65, len(full)-1)
	maxAlloc := uint64(0)
	for _, n := range cuts {
		path, err, alloc := openHostile(t, dir, fmt.Sprintf("cut-%d", n), full[:n])
		if err == nil {
			t.Fatalf("file cut to %d of %d bytes opened", n, len(full))
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "gguf: ") || !strings.Contains(msg, path) {
			t.Fatalf("cut %d: error %q lacks the prefix or path", n, msg)
		}
		maxAlloc = max(maxAlloc, alloc)
	}
	if maxAlloc > allocLimit {
		t.Fatalf("Open of a truncated file allocated %d bytes", maxAlloc)
	}
	t.Logf("%d truncations of a %d-byte file (data at %d) all rejected; max Open allocation %d bytes", len(cuts), len(full), dataOff, maxAlloc)
}

// TestHugeClaimsSmallAlloc checks allocation on a 1 KB file whose tensor
// claims 2^60 elements and whose array claims 2^60 entries.
func TestHugeClaimsSmallAlloc(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name   string
		mutate func(*rawFile)
	}{
		{"tensor", func(r *rawFile) { r.tis[1].dims = []uint64{1 << 30, 1 << 30} }},
		{"array", func(r *rawFile) { r.kvs[2] = rawKV{key: "a", typ: 9, val: arrb(0, 1<<60)} }},
		{"strings", func(r *rawFile) { r.kvs[2] = rawKV{key: "a", typ: 9, val: arrb(8, 1<<60)} }},
	} {
		r := validRaw()
		c.mutate(r)
		r.data = append(r.data, make([]byte, 1024-len(r.bytes()))...)
		b := r.bytes()
		_, err, alloc := openHostile(t, dir, "huge-"+c.name, b)
		if err == nil {
			t.Fatalf("%s: opened", c.name)
		}
		t.Logf("%s: %d-byte file, Open allocated %d bytes: %v", c.name, len(b), alloc, err)
		if alloc > allocLimit {
			t.Fatalf("%s: allocated %d bytes", c.name, alloc)
		}
	}
}

// TestNewReaderMatchesOpen reads the valid file and each hostile case with
// NewReader over memory: it accepts what Open accepts, refuses what Open
// refuses with the same words (without the path), and reads the same data.
func TestNewReaderMatchesOpen(t *testing.T) {
	dir := t.TempDir()
	b := validRaw().bytes()
	path, _, _ := openHostile(t, dir, "valid", b)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !reflect.DeepEqual(m.KVs, f.KVs) || !reflect.DeepEqual(m.Tensors, f.Tensors) || m.DataOffset != f.DataOffset {
		t.Fatalf("NewReader read %+v, Open %+v", m.Tensors, f.Tensors)
	}
	for _, ti := range f.Tensors {
		x, _ := io.ReadAll(f.TensorReader(ti))
		y, _ := io.ReadAll(m.TensorReader(ti))
		if !bytes.Equal(x, y) || len(x) == 0 {
			t.Fatalf("tensor %s: bytes differ", ti.Name)
		}
	}
	for _, c := range hostileCases() {
		r := validRaw()
		c.mutate(r)
		b := r.bytes()
		_, oerr, _ := openHostile(t, dir, c.name, b)
		_, merr := NewReader(bytes.NewReader(b), int64(len(b)))
		if oerr == nil || merr == nil {
			t.Fatalf("%s: Open %v, NewReader %v", c.name, oerr, merr)
		}
		want := strings.Replace(oerr.Error(), filepath.Join(dir, c.name+".gguf")+": ", "", 1)
		if merr.Error() != want {
			t.Fatalf("%s: NewReader says %q, Open %q", c.name, merr, oerr)
		}
	}
}

// TestErrorKinds checks that refusals match their exported kind through
// both Open and NewReader.
func TestErrorKinds(t *testing.T) {
	dir := t.TempDir()
	kinds := map[string]error{
		"bad-magic": ErrFormat, "version-4": ErrFormat, "duplicate-key": ErrFormat, "unknown-type-id": ErrFormat,
		"data-start-past-end": ErrTruncated, "huge-string-length": ErrLimit, "huge-kv-count": ErrTruncated,
		"misaligned-offset": ErrOffset, "overlapping": ErrOffset, "offset-past-end": ErrOffset,
		"data-past-end": ErrOffset, "type-corrupted": ErrOffset, "string-over-cap": ErrLimit, "array-over-cap": ErrLimit,
	}
	for _, c := range hostileCases() {
		want, ok := kinds[c.name]
		if !ok {
			continue
		}
		r := validRaw()
		c.mutate(r)
		b := r.bytes()
		_, oerr, _ := openHostile(t, dir, c.name, b)
		_, merr := NewReader(bytes.NewReader(b), int64(len(b)))
		if !errors.Is(oerr, want) || !errors.Is(merr, want) {
			t.Errorf("%s: Open %v, NewReader %v: want errors.Is %v", c.name, oerr, merr, want)
		}
		delete(kinds, c.name)
	}
	if len(kinds) != 0 {
		t.Fatalf("cases not found: %v", kinds)
	}
}
