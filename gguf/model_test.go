package gguf

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSplitName(t *testing.T) {
	for _, c := range []struct {
		path   string
		prefix string
		no, n  int
		ok     bool
	}{
		{"m-00001-of-00004.gguf", "m", 0, 4, true},
		{"/d/a-b-00004-of-00004.gguf", "/d/a-b", 3, 4, true},
		{"x-00005-of-00004.gguf", "", 0, 0, false},
		{"x-00000-of-00004.gguf", "", 0, 0, false},
		{"x-0001-of-00004.gguf", "", 0, 0, false},
		{"x-00001-of-00004.bin", "", 0, 0, false},
		{"-00001-of-00001.gguf", "", 0, 0, false},
		{"model.gguf", "", 0, 0, false},
		{"x-00001-of-0000a.gguf", "", 0, 0, false},
	} {
		p, no, n, ok := SplitName(c.path)
		if ok != c.ok || p != c.prefix || no != c.no || n != c.n {
			t.Errorf("SplitName(%q) = %q %d %d %v, want %q %d %d %v", c.path, p, no, n, ok, c.prefix, c.no, c.n, c.ok)
		}
		if ok && SplitPath(p, no, n) != c.path {
			t.Errorf("SplitPath(%q, %d, %d) = %q", p, no, n, SplitPath(p, no, n))
		}
	}
}

// writeShards writes genTensors split into shards of the given sizes (as
// llama-gguf-split does: every key in the first, the split keys in each),
// with edit, when set, changing a shard's header first; it returns the
// first shard's path.
func writeShards(t *testing.T, dir string, sizes []int, edit func(no int, h *Header)) string {
	t.Helper()
	all := genTensors()
	prefix := filepath.Join(dir, "m")
	k := 0
	for no, n := range sizes {
		h := Header{Tensors: all[k : k+n]}
		if no == 0 {
			h.KVs = genKVs(64)
		}
		h.KVs = append(h.KVs, ShardKeys(no, len(sizes), len(all))...)
		if edit != nil {
			edit(no, &h)
		}
		writeGen(t, SplitPath(prefix, no, len(sizes)), h)
		k += n
	}
	return SplitPath(prefix, 0, len(sizes))
}

func TestOpenModelSplit(t *testing.T) {
	dir := t.TempDir()
	first := writeShards(t, dir, []int{3, 0, 4, 3}, nil)
	m, err := OpenModel(first, ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !m.Split() || len(m.Shards) != 4 {
		t.Fatalf("shards: %d", len(m.Shards))
	}
	if err := sameKVs(m.View.KVs, append(genKVs(64), ShardKeys(0, 4, 10)...)); err != nil {
		t.Fatal(err)
	}
	all := genTensors()
	if len(m.View.Tensors) != len(all) {
		t.Fatalf("%d tensors, want %d", len(m.View.Tensors), len(all))
	}
	for i, ti := range m.View.Tensors {
		if ti.Name != all[i].Name {
			t.Fatalf("tensor %d is %s, want %s", i, ti.Name, all[i].Name)
		}
		got, err := readAll(m.View, ti)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, tensorBytes(ti)) {
			t.Fatalf("tensor %s: bytes differ", ti.Name)
		}
		sf, st := m.ShardTensor(i)
		own, err := readAll(sf, st)
		if err != nil || !bytes.Equal(own, got) {
			t.Fatalf("tensor %s from its shard %s: %v", ti.Name, sf.Path, err)
		}
		if _, ok := m.View.Tensor(ti.Name); !ok {
			t.Fatalf("View.Tensor(%s) not found", ti.Name)
		}
	}
	// One read across every shard's data section equals the shards' own.
	var concat []byte
	for _, s := range m.Shards {
		b := make([]byte, s.Size-s.DataOffset)
		if _, err := s.ReadAt(b, s.DataOffset); err != nil {
			t.Fatal(err)
		}
		concat = append(concat, b...)
	}
	got := make([]byte, m.View.Size)
	if n, err := m.View.ReadAt(got, 0); err != nil || n != len(got) || !bytes.Equal(got, concat) {
		t.Fatalf("View.ReadAt of everything: %d, %v, equal %v", n, err, bytes.Equal(got, concat))
	}

	// A later shard: refused without AnyShard, the whole model with it.
	third := filepath.Join(dir, "m-00003-of-00004.gguf")
	if _, err := OpenModel(third, ModelOptions{}); !errors.Is(err, ErrSplit) || !strings.Contains(err.Error(), "m-00001-of-00004.gguf") {
		t.Fatalf("later shard without AnyShard: %v", err)
	}
	m3, err := OpenModel(third, ModelOptions{AnyShard: true})
	if err != nil {
		t.Fatal(err)
	}
	if m3.View.Path != first || len(m3.View.Tensors) != len(all) {
		t.Fatalf("from the third shard: %s, %d tensors", m3.View.Path, len(m3.View.Tensors))
	}
	m3.Close()
}

func TestOpenModelUnsplit(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "one.gguf")
	writeGen(t, p, Header{KVs: append(genKVs(0), ShardKeys(0, 1, 10)...), Tensors: genTensors()})
	m, err := OpenModel(p, ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Split() || m.View != m.Shards[0] || len(m.ShardOf) != len(genTensors()) {
		t.Fatalf("a file with split.count 1 is one file: %d shards", len(m.Shards))
	}
	for i, ti := range m.View.Tensors {
		if sf, st := m.ShardTensor(i); sf != m.View || st.Offset != ti.Offset {
			t.Fatalf("ShardTensor(%d) of one file: %s at %d, want %d", i, sf.Path, st.Offset, ti.Offset)
		}
	}
}

func TestOpenModelRefusesInconsistentSplits(t *testing.T) {
	for _, c := range []struct {
		name  string
		sizes []int
		edit  func(no int, h *Header)
		after func(dir string)
		want  string
	}{
		{"missing shard", []int{4, 3, 3}, nil, func(dir string) { os.Remove(filepath.Join(dir, "m-00002-of-00003.gguf")) }, "m-00002-of-00003.gguf, is missing"},
		{"extra shard", []int{5, 5}, nil, func(dir string) {
			os.WriteFile(filepath.Join(dir, "m-00003-of-00003.gguf"), []byte("GGUF"), 0o644)
		}, "m-00003-of-00003.gguf: extra shard"},
		{"wrong count", []int{5, 5}, func(no int, h *Header) {
			if no == 1 {
				setKV(h, SplitCountKey, Uint16(3))
			}
		}, nil, "says split.count 3"},
		{"wrong numbering", []int{3, 3, 4}, func(no int, h *Header) {
			if no == 2 {
				setKV(h, SplitNoKey, Uint16(1))
			}
		}, nil, "wrong numbering"},
		{"tensors.count", []int{5, 5}, func(no int, h *Header) {
			setKV(h, SplitTensorsKey, Int32(9))
		}, nil, "split.tensors.count is 9 but the 2 shards hold 10 tensors"},
		{"tensors.count of a later shard", []int{5, 5}, func(no int, h *Header) {
			if no == 1 {
				setKV(h, SplitTensorsKey, Int32(11))
			}
		}, nil, "says split.tensors.count 11"},
		{"no split.no", []int{5, 5}, func(no int, h *Header) {
			if no == 0 {
				removeKV(h, SplitNoKey)
			}
		}, nil, "split.count is 2 but split.no is missing"},
		{"no split.no in a later shard", []int{5, 5}, func(no int, h *Header) {
			if no == 1 {
				removeKV(h, SplitNoKey)
			}
		}, nil, "m-00002-of-00002.gguf: shard 2 of 2 has no split.no"},
		{"no split.count in a later shard", []int{5, 5}, func(no int, h *Header) {
			if no == 1 {
				removeKV(h, SplitCountKey)
			}
		}, nil, "m-00002-of-00002.gguf: shard 2 of 2 has no split.count"},
		{"no split.tensors.count", []int{5, 5}, func(no int, h *Header) {
			if no == 0 {
				removeKV(h, SplitTensorsKey)
			}
		}, nil, "the first shard has no split.tensors.count"},
		{"key type", []int{5, 5}, func(no int, h *Header) {
			setKV(h, SplitCountKey, Uint32(2))
		}, nil, "llama.cpp reads it as UINT16"},
		{"misnamed", []int{5, 5}, nil, func(dir string) {
			os.Rename(filepath.Join(dir, "m-00001-of-00002.gguf"), filepath.Join(dir, "m-00001-of-00003.gguf"))
		}, "is not named"},
		{"duplicate tensor", []int{5, 5}, func(no int, h *Header) {
			if no == 1 {
				h.Tensors = append([]TensorInfo{genTensors()[0]}, h.Tensors[1:]...)
			}
		}, nil, "is in more than one shard"},
		{"broken shard", []int{5, 5}, nil, func(dir string) {
			os.WriteFile(filepath.Join(dir, "m-00002-of-00002.gguf"), []byte("GGUF\x03\x00"), 0o644)
		}, "m-00002-of-00002.gguf"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			first := writeShards(t, dir, c.sizes, c.edit)
			if c.after != nil {
				c.after(dir)
			}
			if c.name == "misnamed" {
				first = filepath.Join(dir, "m-00001-of-00003.gguf")
			}
			m, err := OpenModel(first, ModelOptions{})
			if err == nil {
				m.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
			}
		})
	}
}

// removeKV removes key from h.
func removeKV(h *Header, key string) {
	h.KVs = slices.DeleteFunc(h.KVs, func(kv KV) bool { return kv.Key == key })
}

// setKV replaces the value of key in h.
func setKV(h *Header, key string, v Value) {
	for i := range h.KVs {
		if h.KVs[i].Key == key {
			h.KVs[i].Value = v
		}
	}
}
