package gguf

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"
)

// genKVs returns metadata pairs of every value type, arrays of every element
// type (strings and empty arrays included), with alignment set to align (0:
// key absent).
func genKVs(align uint32) []KV {
	kvs := []KV{
		{"general.architecture", String("llama")},
		{"general.name", String("gen ü test")},
		{"general.empty", String("")},
	}
	if align != 0 {
		kvs = append(kvs, KV{AlignmentKey, Uint32(align)})
	}
	kvs = append(kvs,
		KV{"t.u8", Uint8(200)}, KV{"t.i8", Int8(-100)},
		KV{"t.u16", Uint16(60000)}, KV{"t.i16", Int16(-30000)},
		KV{"t.u32", Uint32(4000000000)}, KV{"t.i32", Int32(-2000000000)},
		KV{"t.f32", Float32(float32(math.Pi))}, KV{"t.nan", Float32(float32(math.NaN()))},
		KV{"t.true", Bool(true)}, KV{"t.false", Bool(false)},
		KV{"t.u64", Uint64(1 << 63)}, KV{"t.i64", Int64(-1 << 62)},
		KV{"t.f64", Float64(-math.E)}, KV{"t.inf", Float64(math.Inf(-1))},
		KV{"a.u8", Uint8s([]uint8{0, 1, 255})}, KV{"a.i8", Int8s([]int8{-128, 127})},
		KV{"a.u16", Uint16s([]uint16{1, 65535})}, KV{"a.i16", Int16s([]int16{-1, 2})},
		KV{"a.u32", Uint32s([]uint32{7, 8, 9})}, KV{"a.i32", Int32s([]int32{-7, 8})},
		KV{"a.f32", Float32s([]float32{0.5, -1.25, float32(math.Inf(1))})},
		KV{"a.bool", Bools([]bool{true, false, true})},
		KV{"a.str", Strings([]string{"<unk>", "", "▁the", "\n", "日本"})},
		KV{"a.u64", Uint64s([]uint64{math.MaxUint64, 0})}, KV{"a.i64", Int64s([]int64{math.MinInt64})},
		KV{"a.f64", Float64s([]float64{1e300, -0.0})},
		KV{"a.empty", Strings([]string{})}, KV{"a.empty32", Float32s(nil)},
	)
	return kvs
}

// genTensors returns tensors of several types and shapes (1 to 4 dims).
func genTensors() []TensorInfo {
	return []TensorInfo{
		{Name: "token_embd.weight", Type: TypeF32, Shape: []uint64{7, 5}},
		{Name: "a.f16", Type: TypeF16, Shape: []uint64{3}},
		{Name: "a.q4_0", Type: TypeQ4_0, Shape: []uint64{64, 3}},
		{Name: "a.q8_0", Type: TypeQ8_0, Shape: []uint64{32, 2, 3}},
		{Name: "a.q4_k", Type: TypeQ4_K, Shape: []uint64{256, 2}},
		{Name: "a.q6_k", Type: TypeQ6_K, Shape: []uint64{512, 1, 1, 2}},
		{Name: "a.bf16", Type: TypeBF16, Shape: []uint64{5, 1, 3}},
		{Name: "a.i8", Type: TypeI8, Shape: []uint64{33}},
		{Name: "blk.0.attn_q.weight", Type: TypeMXFP4, Shape: []uint64{32, 4}},
		{Name: "z.last_f32", Type: TypeF32, Shape: []uint64{1, 1, 1, 1}},
	}
}

// tensorBytes returns deterministic contents for a tensor.
func tensorBytes(t TensorInfo) []byte {
	h := fnv.New64a()
	h.Write([]byte(t.Name))
	r := rand.New(rand.NewPCG(h.Sum64(), 1))
	b := make([]byte, t.Bytes())
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// writeGen writes h to path, streaming each tensor's data in chunks of
// varying sizes (odd tensors) or with WriteTensor (even ones).
func writeGen(t testing.TB, path string, h Header) []TensorInfo {
	t.Helper()
	w, err := Create(path, h, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	infos := w.Tensors()
	for i, ti := range infos {
		data := tensorBytes(ti)
		if i%2 == 0 {
			if err := w.WriteTensor(bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			continue
		}
		for k, c := 0, 1; k < len(data); c = c*3 + 1 {
			n := min(c, len(data)-k)
			if m, err := w.Write(data[k : k+n]); err != nil || m != n {
				t.Fatalf("Write: %d, %v", m, err)
			}
			k += n
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return infos
}

type genCase struct {
	name    string
	version uint32
	align   uint32
	kvs     []KV
	tensors []TensorInfo
}

func genCases() []genCase {
	return []genCase{
		{"v3-default-align", 0, 0, genKVs(0), genTensors()},
		{"v3-align32", 3, 32, genKVs(32), genTensors()},
		{"v3-align64", 3, 64, genKVs(64), genTensors()},
		{"v2-align64", 2, 64, genKVs(64), genTensors()},
		{"v3-align8-no-tensors", 3, 8, genKVs(8), nil},
		{"v3-one-tensor", 3, 64, []KV{{"general.architecture", String("llama")}, {AlignmentKey, Uint32(64)}},
			[]TensorInfo{{Name: "x", Type: TypeQ8_0, Shape: []uint64{32}}}},
	}
}

// writeCase writes c into dir and returns the file path.
func writeCase(t testing.TB, dir string, c genCase) string {
	path := filepath.Join(dir, c.name+".gguf")
	writeGen(t, path, Header{Version: c.version, KVs: c.kvs, Tensors: c.tensors})
	return path
}

// TestGeneratedRoundTrip writes files with the Writer, reads them back and
// checks every KV, info and tensor byte, then rewrites them and checks that
// the bytes are identical.
func TestGeneratedRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, c := range genCases() {
		t.Run(c.name, func(t *testing.T) {
			path := writeCase(t, dir, c)
			f, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			wantVersion := c.version
			if wantVersion == 0 {
				wantVersion = 3
			}
			wantAlign := uint64(c.align)
			if wantAlign == 0 {
				wantAlign = 32
			}
			if f.Version != wantVersion || f.Alignment != wantAlign {
				t.Fatalf("version %d alignment %d, want %d %d", f.Version, f.Alignment, wantVersion, wantAlign)
			}
			// Without tensors the writer leaves out the padding, as
			// llama.cpp allows; with them the data start aligned.
			if len(c.tensors) == 0 && f.DataOffset != f.Size {
				t.Fatalf("file without tensors: data offset %d, want the end of the header %d", f.DataOffset, f.Size)
			}
			if len(c.tensors) > 0 && (f.DataOffset%int64(wantAlign) != 0 || f.Size%int64(wantAlign) != 0) {
				t.Fatalf("data offset %d / size %d not aligned to %d", f.DataOffset, f.Size, wantAlign)
			}
			if err := sameKVs(f.KVs, c.kvs); err != nil {
				t.Fatal(err)
			}
			if len(f.Tensors) != len(c.tensors) {
				t.Fatalf("%d tensors, want %d", len(f.Tensors), len(c.tensors))
			}
			off := uint64(0)
			for i, ti := range f.Tensors {
				want := c.tensors[i]
				if ti.Name != want.Name || ti.Type != want.Type || !reflect.DeepEqual(ti.Shape, want.Shape) || ti.Offset != off {
					t.Fatalf("tensor %d: got %+v, want %+v at offset %d", i, ti, want, off)
				}
				off += alignUp(ti.Bytes(), wantAlign)
				if got, ok := f.Tensor(ti.Name); !ok || got.Offset != ti.Offset {
					t.Fatalf("Tensor(%q) = %+v, %v", ti.Name, got, ok)
				}
				b, err := readAll(f, ti)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(b, tensorBytes(want)) {
					t.Fatalf("tensor %q: data differs", ti.Name)
				}
			}
			if len(f.Tensors) > 0 && uint64(f.Size) != uint64(f.DataOffset)+off {
				t.Fatalf("file size %d, want data offset %d + padded data %d", f.Size, f.DataOffset, off)
			}
			out := filepath.Join(dir, c.name+".rewritten.gguf")
			rewrite(t, path, out)
			a, _ := os.ReadFile(path)
			b, _ := os.ReadFile(out)
			if !bytes.Equal(a, b) {
				t.Fatalf("rewrite differs: %d vs %d bytes", len(a), len(b))
			}
		})
	}
}

func readAll(f *File, ti TensorInfo) ([]byte, error) {
	r := f.TensorReader(ti)
	b := make([]byte, r.Size())
	_, err := r.ReadAt(b, 0)
	if err != nil && len(b) > 0 {
		return nil, err
	}
	return b, nil
}

// sameKVs compares keys, types and values bit for bit (NaN included).
func sameKVs(got, want []KV) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d KVs, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Key != w.Key || g.Value.Type != w.Value.Type || g.Value.Elem != w.Value.Elem {
			return fmt.Errorf("KV %d: got %q %s/%s, want %q %s/%s", i, g.Key, g.Value.Type, g.Value.Elem, w.Key, w.Value.Type, w.Value.Elem)
		}
		if err := g.Value.check(); err != nil {
			return fmt.Errorf("KV %q: %v", g.Key, err)
		}
		if !bytes.Equal(appendValue(nil, g.Value), appendValue(nil, w.Value)) {
			return fmt.Errorf("KV %q: got %v, want %v", g.Key, g.Value.Data, w.Value.Data)
		}
	}
	return nil
}

// TestParserAgrees reads every generated file with gguf-parser-go and
// checks that it agrees on every KV and tensor info.
func TestParserAgrees(t *testing.T) {
	dir := t.TempDir()
	paths := []string{storiesPath}
	for _, c := range genCases() {
		paths = append(paths, writeCase(t, dir, c))
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			pf, err := parser.ParseGGUFFile(path)
			if err != nil {
				t.Fatalf("gguf-parser-go: %v", err)
			}
			if uint32(pf.Header.Version) != f.Version || pf.Header.TensorCount != uint64(len(f.Tensors)) {
				t.Fatalf("parser: version %d, %d tensors", pf.Header.Version, pf.Header.TensorCount)
			}
			if len(pf.Header.MetadataKV) != len(f.KVs) {
				t.Fatalf("parser: %d KVs, we %d", len(pf.Header.MetadataKV), len(f.KVs))
			}
			for i, kv := range f.KVs {
				if err := agreeKV(pf.Header.MetadataKV[i], kv); err != nil {
					t.Error(err)
				}
			}
			if len(f.Tensors) > 0 && pf.TensorDataStartOffset != f.DataOffset {
				t.Errorf("parser data start %d, we %d", pf.TensorDataStartOffset, f.DataOffset)
			}
			for i, ti := range f.Tensors {
				pt := pf.TensorInfos[i]
				if pt.Name != ti.Name || uint32(pt.Type) != uint32(ti.Type) || int(pt.NDimensions) != len(ti.Shape) ||
					!reflect.DeepEqual(pt.Dimensions, ti.Shape) || pt.Offset != ti.Offset {
					t.Errorf("tensor %d: parser %s %v %v @%d, we %s %v %v @%d", i,
						pt.Name, pt.Type, pt.Dimensions, pt.Offset, ti.Name, ti.Type, ti.Shape, ti.Offset)
				}
			}
		})
	}
}

func agreeKV(p parser.GGUFMetadataKV, kv KV) error {
	if p.Key != kv.Key || uint32(p.ValueType) != uint32(kv.Value.Type) {
		return fmt.Errorf("KV %q %s: parser has %q type %d", kv.Key, kv.Value.Type, p.Key, p.ValueType)
	}
	if kv.Value.Type != TypeArray {
		if !sameScalar(p.Value, kv.Value.Data) {
			return fmt.Errorf("KV %q: parser %#v, we %#v", kv.Key, p.Value, kv.Value.Data)
		}
		return nil
	}
	av, ok := p.Value.(parser.GGUFMetadataKVArrayValue)
	if !ok {
		return fmt.Errorf("KV %q: parser value %T, not an array", kv.Key, p.Value)
	}
	if uint32(av.Type) != uint32(kv.Value.Elem) || av.Len != uint64(kv.Value.Len()) || len(av.Array) != kv.Value.Len() {
		return fmt.Errorf("KV %q: parser array of %d %v (%d held), we %d %s", kv.Key, av.Len, av.Type, len(av.Array), kv.Value.Len(), kv.Value.Elem)
	}
	rv := reflect.ValueOf(kv.Value.Data)
	for i := range av.Array {
		if !sameScalar(av.Array[i], rv.Index(i).Interface()) {
			return fmt.Errorf("KV %q[%d]: parser %#v, we %#v", kv.Key, i, av.Array[i], rv.Index(i).Interface())
		}
	}
	return nil
}

// sameScalar compares a parser value a with ours, b, of the same Go type;
// floats bit for bit. gguf-parser-go returns strings with bytes.TrimSpace
// applied (so "\n" reads as ""): strings are compared after the same trim.
func sameScalar(a, b any) bool {
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return ok && x == string(bytes.TrimSpace([]byte(y)))
	case float32:
		y, ok := b.(float32)
		return ok && math.Float32bits(x) == math.Float32bits(y)
	case float64:
		y, ok := b.(float64)
		return ok && math.Float64bits(x) == math.Float64bits(y)
	}
	return reflect.TypeOf(a) == reflect.TypeOf(b) && a == b
}
