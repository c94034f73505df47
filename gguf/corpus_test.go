package gguf

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
)

// This file generates the hostile-file corpus that the parity test (with
// llama.cpp) and FuzzOpen use. It is exported to the external test package
// only: nothing here is part of the library.

// ParityBase is a valid GGUF file that the corpus mutates.
type ParityBase struct {
	Name string
	Data []byte
}

// ParityCase is one generated file: its class (the kind of mutation), a
// name unique in the corpus, and its bytes.
type ParityCase struct {
	Class, Name string
	Data        []byte
}

// rawFromBytes decodes a canonical file into a rawFile that re-encodes to
// the same bytes; it reports an error for any other file.
func rawFromBytes(b []byte) (*rawFile, error) {
	f, err := NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, err
	}
	r := &rawFile{magic: "GGUF", version: f.Version, align: f.Alignment, data: b[f.DataOffset:]}
	for _, kv := range f.KVs {
		if _, lazy := kv.Value.Data.(*ArrayRef); lazy {
			return nil, fmt.Errorf("key %q: array too large for a corpus base", kv.Key)
		}
		r.kvs = append(r.kvs, rawKV{key: kv.Key, typ: uint32(kv.Value.Type), val: appendValue(nil, kv.Value)})
	}
	for _, t := range f.Tensors {
		r.tis = append(r.tis, rawTI{name: t.Name, nd: -1, dims: t.Shape, typ: uint32(t.Type), off: t.Offset})
	}
	if !bytes.Equal(r.bytes(), b) {
		return nil, fmt.Errorf("not canonical: re-encoding differs")
	}
	return r, nil
}

// clone copies r deeply, except the data, which mutations never change in
// place.
func (r *rawFile) clone() *rawFile {
	c := *r
	c.kvs = slices.Clone(r.kvs)
	c.tis = slices.Clone(r.tis)
	for i := range c.tis {
		c.tis[i].dims = slices.Clone(c.tis[i].dims)
	}
	return &c
}

// relayout gives every tensor the offset llama.cpp expects and moves the
// data accordingly (a tensor that grew gets zeros), so that a mutation of
// types, shapes or alignment yields a file whose layout is right.
func (r *rawFile) relayout() {
	var data []byte
	off := uint64(0)
	for i := range r.tis {
		t := TensorInfo{Type: Type(r.tis[i].typ), Shape: r.tis[i].dims}
		n, err := t.size()
		if err != nil || n > 1<<24 || r.align == 0 || r.align > 1<<20 {
			return // the shape is the point of the case: leave it
		}
		old := r.tis[i].off
		r.tis[i].off = off
		end := off + alignUp(n, r.align)
		chunk := make([]byte, end-off)
		if old < uint64(len(r.data)) {
			copy(chunk[:n], r.data[old:])
		}
		data = append(data, chunk...)
		off = end
	}
	r.data = data
}

// EachParityCase generates the corpus from the bases and the seed, n
// mutations per class and base (more for the classes that need them), and
// hands each file to emit. The same arguments give the same files.
func EachParityCase(bases []ParityBase, seed uint64, n int, emit func(ParityCase)) error {
	for bi, base := range bases {
		r, err := rawFromBytes(base.Data)
		if err != nil {
			return fmt.Errorf("base %s: %v", base.Name, err)
		}
		rng := rand.New(rand.NewPCG(seed, uint64(bi)))
		mutateBase(base.Name, r, rng, n, emit)
	}
	rng := rand.New(rand.NewPCG(seed, 1<<32))
	for i := range 8 * n {
		emit(ParityCase{"handcrafted", fmt.Sprintf("handcrafted-%d", i), handcrafted(rng, i)})
	}
	return nil
}

// edit is one mutation of a rawFile.
type edit func(r *rawFile, rng *rand.Rand) string

func mutateBase(base string, r *rawFile, rng *rand.Rand, n int, emit func(ParityCase)) {
	full := r.bytes()
	headerEnd := len(full) - len(r.data)
	one := func(class string, i int, data []byte, what string) {
		emit(ParityCase{class, fmt.Sprintf("%s/%s-%d(%s)", base, class, i, what), data})
	}
	apply := func(class string, count int, e edit) {
		for i := range count {
			c := r.clone()
			what := e(c, rng)
			one(class, i, c.bytes(), what)
		}
	}
	nt, nkv := uint64(len(r.tis)), uint64(len(r.kvs))
	apply("count", n, func(c *rawFile, rng *rand.Rand) string {
		deltas := []int64{-2, -1, 1, 2, 3, 1 << 8, 1 << 20, 1 << 26, 1 << 27, 1 << 40, -1 << 62}
		d := deltas[rng.IntN(len(deltas))]
		if rng.IntN(2) == 0 {
			c.nt = ptr(nt + uint64(d))
			return fmt.Sprintf("n_tensors%+d", d)
		}
		c.nkv = ptr(nkv + uint64(d))
		return fmt.Sprintf("n_kv%+d", d)
	})
	if nt > 0 {
		apply("type", 2*n, func(c *rawFile, rng *rand.Rand) string {
			i := rng.IntN(len(c.tis))
			ids := []uint32{uint32(rng.IntN(46)), uint32(rng.IntN(46)), 1 << 31, ^uint32(0)}
			c.tis[i].typ = ids[rng.IntN(len(ids))]
			fix := rng.IntN(3) == 0
			if fix {
				c.relayout()
			}
			return fmt.Sprintf("%s->type %d relayout=%v", c.tis[i].name, c.tis[i].typ, fix)
		})
		apply("shape", 2*n, func(c *rawFile, rng *rand.Rand) string {
			i := rng.IntN(len(c.tis))
			t := &c.tis[i]
			what := ""
			switch rng.IntN(4) {
			case 0: // change the number of dimensions
				nd := rng.IntN(6)
				switch {
				case nd < len(t.dims):
					t.dims = t.dims[:nd]
				default:
					for len(t.dims) < nd {
						t.dims = append(t.dims, uint64(1+rng.IntN(2)))
					}
				}
				what = fmt.Sprintf("n_dims %d", nd)
			case 1: // a dimension count of the n_dims field only
				nds := []int{0, 5, 8, 1 << 30, -1}
				t.nd = nds[rng.IntN(len(nds))]
				what = fmt.Sprintf("n_dims field %d", t.nd)
			default:
				if len(t.dims) == 0 {
					t.dims = []uint64{1}
				}
				j := rng.IntN(len(t.dims))
				d := t.dims[j]
				vals := []uint64{d + 1, d - 1, d * 2, d / 2, 0, 1, 1 << 32, 1 << 62, 1 << 63, rng.Uint64(), d + 32, d * 256}
				t.dims[j] = vals[rng.IntN(len(vals))]
				what = fmt.Sprintf("ne[%d] %d->%d", j, d, t.dims[j])
			}
			if t.nd < 0 && rng.IntN(3) == 0 {
				c.relayout()
				what += " relayout"
			}
			return t.name + " " + what
		})
		apply("offset", n, func(c *rawFile, rng *rand.Rand) string {
			i := rng.IntN(len(c.tis))
			t := &c.tis[i]
			a := c.align
			vals := []uint64{t.off + a, t.off - a, t.off + 1, 0, t.off + a*uint64(1+rng.IntN(64)), ^uint64(0) &^ (a - 1), t.off - 1}
			old := t.off
			t.off = vals[rng.IntN(len(vals))]
			if rng.IntN(4) == 0 && i+1 < len(c.tis) {
				c.tis[i].off, c.tis[i+1].off = c.tis[i+1].off, old
				return fmt.Sprintf("%s swapped with the next", t.name)
			}
			return fmt.Sprintf("%s offset %d->%d", t.name, old, t.off)
		})
		apply("ndims0", n/2+1, func(c *rawFile, rng *rand.Rand) string {
			i := rng.IntN(len(c.tis))
			if rng.IntN(2) == 0 {
				i = len(c.tis) - 1
			}
			c.tis[i].dims = nil
			fix := rng.IntN(2) == 0
			if fix {
				c.relayout()
			}
			return fmt.Sprintf("%s n_dims 0 relayout=%v", c.tis[i].name, fix)
		})
		apply("name", n, func(c *rawFile, rng *rand.Rand) string {
			i := rng.IntN(len(c.tis))
			other := c.tis[rng.IntN(len(c.tis))].name
			names := []string{"", "a\x00b", other, other + "\x00x", "\x01\x02", "t\xff\xfe", "\u00e9t\u00e9",
				strings.Repeat("n", 63), strings.Repeat("n", 64), strings.Repeat("n", 200), "a\nb\x7f"}
			c.tis[i].name = names[rng.IntN(len(names))]
			return fmt.Sprintf("tensor %d name %q", i, c.tis[i].name)
		})
	}
	apply("key", n, func(c *rawFile, rng *rand.Rand) string {
		i := rng.IntN(len(c.kvs))
		other := c.kvs[rng.IntN(len(c.kvs))].key
		keys := []string{"", "\x00", "k\x00", other, "a\x1b[0m", "k\xff", strings.Repeat("k", 65535), strings.Repeat("k", 65536), strings.Repeat("k", 70000)}
		k := keys[rng.IntN(len(keys))]
		if c.kvs[i].key == AlignmentKey {
			return "alignment key kept"
		}
		c.kvs[i].key = k
		return fmt.Sprintf("key %d of %d bytes", i, len(k))
	})
	apply("bool", n, func(c *rawFile, rng *rand.Rand) string {
		b := byte(rng.IntN(256))
		kv := rawKV{key: fmt.Sprintf("x.bool.%d", rng.IntN(1000)), typ: uint32(TypeBool), val: []byte{b}}
		what := fmt.Sprintf("BOOL %d", b)
		if rng.IntN(2) == 0 {
			m := 1 + rng.IntN(9)
			vals := make([]byte, m)
			for j := range vals {
				vals[j] = byte(rng.IntN(256))
			}
			kv = rawKV{key: kv.key, typ: uint32(TypeArray), val: arrb(uint32(TypeBool), uint64(m), vals)}
			what = fmt.Sprintf("BOOL array % x", vals)
		}
		c.kvs = slices.Insert(c.kvs, rng.IntN(len(c.kvs)+1), kv)
		c.relayout()
		return what
	})
	apply("align", n, func(c *rawFile, rng *rand.Rand) string {
		aligns := []uint32{1, 2, 4, 8, 16, 32, 64, 128, 4096, 3, 0, 48, 1 << 31}
		a := aligns[rng.IntN(len(aligns))]
		kv := rawKV{key: AlignmentKey, typ: uint32(TypeUint32), val: u32b(a)}
		switch rng.IntN(5) {
		case 0:
			kv.typ, kv.val = uint32(TypeUint64), u64b(uint64(a))
		case 1:
			kv.typ, kv.val = uint32(TypeArray), arrb(uint32(TypeUint32), 1, u32b(a))
		}
		j := slices.IndexFunc(c.kvs, func(kv rawKV) bool { return kv.key == AlignmentKey })
		if j < 0 {
			c.kvs = append(c.kvs, kv)
		} else {
			c.kvs[j] = kv
		}
		fix := rng.IntN(2) == 0 && kv.typ == uint32(TypeUint32) && a != 0 && a&(a-1) == 0 && a <= 4096
		if fix {
			c.align = uint64(a)
			c.relayout()
		}
		return fmt.Sprintf("alignment %s %d relayout=%v", ValueType(kv.typ), a, fix)
	})
	apply("padding", n/2+1, func(c *rawFile, rng *rand.Rand) string {
		switch rng.IntN(3) {
		case 0:
			c.tis, c.data = nil, nil
			c.align = 1
			return "no tensors, no padding"
		case 1:
			c.tis, c.data = nil, nil
			return "no tensors, padded"
		}
		c.data = append(slices.Clone(c.data), make([]byte, rng.IntN(100))...)
		return "trailing bytes"
	})
	for i := range n {
		cut := rng.IntN(headerEnd + 64)
		if i%4 == 0 {
			cut = rng.IntN(len(full))
		}
		one("truncate", i, full[:cut], fmt.Sprintf("cut at %d of %d", cut, len(full)))
	}
	for i := range 4 * n {
		b := slices.Clone(full[:headerEnd])
		k := 1 + rng.IntN(3)
		for range k {
			b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
		}
		one("flip", i, append(b, r.data...), fmt.Sprintf("%d header bytes", k))
	}
}

// handcrafted builds a file in the manner of llama.cpp's test-gguf: random
// KVs of every type (BOOLs take random bytes), random tensors of random
// types and shapes, then one deliberate fault chosen by i.
func handcrafted(rng *rand.Rand, i int) []byte {
	r := &rawFile{magic: "GGUF", version: 3, align: DefaultAlignment}
	for k := range rng.IntN(12) {
		typ := ValueType(rng.IntN(13))
		key := fmt.Sprintf("my_key_%d", k)
		if typ == TypeArray {
			et := ValueType(rng.IntN(13))
			if et == TypeArray {
				et = TypeString
			}
			m := rng.IntN(8)
			var items []byte
			for range m {
				items = append(items, randomScalar(rng, et)...)
			}
			r.kvs = append(r.kvs, rawKV{key: key, typ: uint32(TypeArray), val: arrb(uint32(et), uint64(m), items)})
			continue
		}
		r.kvs = append(r.kvs, rawKV{key: key, typ: uint32(typ), val: randomScalar(rng, typ)})
	}
	for k := range rng.IntN(8) {
		var typ Type
		for {
			typ = Type(rng.IntN(43))
			if _, ok := typ.Info(); ok {
				break
			}
		}
		ti, _ := typ.Info()
		dims := []uint64{uint64((1 + rng.IntN(10)) * ti.BlockSize)}
		for range rng.IntN(4) {
			dims = append(dims, uint64(1+rng.IntN(10)))
		}
		r.tis = append(r.tis, rawTI{name: fmt.Sprintf("my_tensor_%d", k), nd: -1, dims: dims, typ: uint32(typ)})
	}
	r.data = nil
	r.relayout()
	switch i % 16 {
	case 0: // valid
	case 1:
		r.magic = "FUGG"
	case 2:
		r.version = []uint32{0, 1, 4, 3 << 24}[rng.IntN(4)]
	case 3:
		r.nt = ptr(^uint64(0) - uint64(rng.IntN(3)))
	case 4:
		r.nkv = ptr(^uint64(0) - uint64(rng.IntN(3)))
	case 5:
		if len(r.kvs) > 0 {
			r.kvs[0].rawKey = u64b(^uint64(0))
		}
	case 6:
		if len(r.kvs) > 0 {
			r.kvs[rng.IntN(len(r.kvs))].key = ""
		}
	case 7:
		if len(r.kvs) > 0 {
			r.kvs[rng.IntN(len(r.kvs))].typ = uint32(13 + rng.IntN(3))
		}
	case 8:
		if len(r.kvs) > 1 {
			r.kvs[1].key = r.kvs[0].key
		}
	case 9:
		r.kvs = append(r.kvs, rawKV{key: AlignmentKey, typ: uint32(TypeUint32), val: u32b(uint32(1 + 2*rng.IntN(20)))})
	case 10:
		if len(r.tis) > 0 {
			r.tis[0].rawName = u64b(^uint64(0))
		}
	case 11:
		if len(r.tis) > 0 {
			r.tis[rng.IntN(len(r.tis))].dims = []uint64{0, uint64(rng.IntN(5))}
			r.relayout()
		}
	case 12:
		if len(r.tis) > 0 {
			j := rng.IntN(len(r.tis))
			r.tis[j].dims = []uint64{0x7FFFFFFFFFFFFFC0, 1 + uint64(rng.IntN(3))}
			if rng.IntN(2) == 0 {
				// The element count wraps to 0 in int64 (llama.cpp's bug).
				r.tis[j].typ, r.tis[j].dims = uint32(TypeF32), []uint64{512, 1 << 62}
			}
		}
	case 13:
		r.tis = append(r.tis,
			rawTI{name: "big0", nd: -1, dims: []uint64{0x7FFFFFFFFFFFFFC0}, typ: uint32(TypeI8)},
			rawTI{name: "big1", nd: -1, dims: []uint64{0x7FFFFFFFFFFFFFC0}, typ: uint32(TypeI8), off: 0x7FFFFFFFFFFFFFC0})
	case 14:
		if n := len(r.data); n > 0 {
			r.data = r.data[:rng.IntN(n)]
		}
	case 15:
		a := uint32(1) << (rng.IntN(8) + 1)
		r.kvs = append(r.kvs, rawKV{key: AlignmentKey, typ: uint32(TypeUint32), val: u32b(a)})
		r.align = uint64(a)
		r.relayout()
	}
	return r.bytes()
}

// randomScalar encodes one random value of the scalar type t (a random
// byte for a BOOL, so most are neither 0 nor 1).
func randomScalar(rng *rand.Rand, t ValueType) []byte {
	switch t {
	case TypeString:
		s := make([]byte, rng.IntN(40))
		for i := range s {
			s[i] = byte(rng.IntN(256)) | 1
		}
		return appendString(nil, string(s))
	case TypeArray:
		return nil
	}
	b := make([]byte, t.scalarSize())
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	return b
}
