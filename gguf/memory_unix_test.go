//go:build linux

package gguf

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// memLimitKiB is the address-space limit (RLIMIT_AS) the child runs under:
// 1 GiB, the Go runtime included. With GOMAXPROCS=1 the runtime alone
// needs between 700,000 KiB (it fails there, opening the 1 MB real model)
// and 800,000 KiB (it works), so a header bomb has less than 300 MiB.
const memLimitKiB = 1 << 20

// memChildEnv names the file a child process of TestBoundedMemory opens.
const memChildEnv = "PHYSARIUM_GGUF_MEMORY_CHILD"

// TestMain lets the test binary serve as the child of TestBoundedMemory.
func TestMain(m *testing.M) {
	if path := os.Getenv(memChildEnv); path != "" {
		os.Exit(memoryChild(path))
	}
	os.Exit(m.Run())
}

// memoryChild opens path and prints the verdict and its error kind.
func memoryChild(path string) int {
	f, err := Open(path)
	if err != nil {
		kind := "other"
		for _, k := range []error{ErrLimit, ErrTruncated, ErrOffset, ErrFormat} {
			if errors.Is(err, k) {
				kind = k.Error()
				break
			}
		}
		fmt.Printf("refused [%s] %v\n", kind, err)
		return 0
	}
	defer f.Close()
	fmt.Printf("accepted: %d KVs, %d tensors, data at %d\n", len(f.KVs), len(f.Tensors), f.DataOffset)
	return 0
}

// sparseFile writes head, a hole of gap zero bytes, then tail, and
// extends the file to size bytes (when larger) with another hole.
func sparseFile(t *testing.T, path string, head []byte, gap int64, tail []byte, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(head); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(tail, int64(len(head))+gap); err != nil {
		t.Fatal(err)
	}
	if end := int64(len(head)) + gap + int64(len(tail)); size > end {
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
	} else if err := f.Truncate(end); err != nil {
		t.Fatal(err)
	}
}

// TestBoundedMemory opens header bombs (sparse files of 1 to 3 GB, which
// cost no disk) in a child process limited to 1 GiB of address space:
// each must be refused cleanly, or accepted where llama.cpp accepts it,
// within that bound. The files are those that made the reader run out of
// memory before: counts raised far past the real ones, a 1 GiB UINT32
// array, 2^28 empty strings, a string and a key one byte over
// MaxStringLen, a 1 GiB UINT8 array and an array one element over
// MaxArrayLen.
func TestBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1-3 GB sparse files in child processes")
	}
	if raceOn {
		t.Skip("the race detector's runtime alone needs more address space than the limit")
	}
	base, err := os.ReadFile(filepath.Join("..", "..", "shared", "models", "stories260K.gguf"))
	if err != nil {
		t.Fatalf("the real model: %v", err)
	}
	r, err := rawFromBytes(base)
	if err != nil {
		t.Fatal(err)
	}
	// withKV returns the real model with one more KV in front, split where
	// its payload of gap zero bytes goes (gap is a multiple of 32, so the
	// padding of the data section stays as it was).
	withKV := func(kv rawKV) (head, tail []byte) {
		c := r.clone()
		c.kvs = append([]rawKV{kv}, c.kvs...)
		b := c.bytes()
		cut := 24 + len(appendString(nil, kv.key)) + len(kv.val) + 4
		if kv.rawKey != nil {
			cut = 24 + len(kv.rawKey) + len(kv.val) + 4
		}
		return b[:cut], b[cut:]
	}
	type bomb struct {
		name   string
		head   []byte
		gap    int64
		tail   []byte
		size   int64
		accept bool   // llama.cpp accepts it (and has the memory to)
		want   string // the refusal must contain it
	}
	var bombs []bomb
	patched := func(off int, v uint64) []byte {
		b := bytes.Clone(base)
		copy(b[off:], u64b(v))
		return b
	}
	bombs = append(bombs,
		bomb{name: "n_kv+2^27 in 3 GB", head: patched(16, uint64(len(r.kvs))+1<<27), size: 3 << 30, want: "gguf: "},
		bomb{name: "n_tensors+2^26 in 3 GB", head: patched(8, uint64(len(r.tis))+1<<26), size: 3 << 30, want: "gguf: "},
	)
	h, tl := withKV(rawKV{key: "bomb.u32", typ: 9, val: cat(u32b(uint32(TypeUint32)), u64b(1<<28))})
	bombs = append(bombs, bomb{name: "UINT32 array of 2^28", head: h, gap: 1 << 30, tail: tl, accept: true})
	h, tl = withKV(rawKV{key: "bomb.str", typ: 9, val: cat(u32b(uint32(TypeString)), u64b(1<<28))})
	bombs = append(bombs, bomb{name: "2^28 empty strings", head: h, gap: 8 << 28, tail: tl, accept: true})
	h, tl = withKV(rawKV{key: "bomb.s", typ: 8, val: u64b(MaxStringLen + 1)})
	bombs = append(bombs, bomb{name: "string of 2^30+1 bytes", head: h, gap: MaxStringLen + 1, tail: tl, want: "MaxStringLen"})
	h = cat([]byte("GGUF"), u32b(3), u64b(0), u64b(1), u64b(MaxStringLen+1))
	bombs = append(bombs, bomb{name: "key of 2^30+1 bytes", head: h, gap: MaxStringLen + 1, tail: cat(u32b(0), []byte{0}), want: "MaxStringLen"})
	h, tl = withKV(rawKV{key: "bomb.u8", typ: 9, val: cat(u32b(uint32(TypeUint8)), u64b(1<<30))})
	bombs = append(bombs, bomb{name: "UINT8 array of 1 GiB", head: h, gap: 1 << 30, tail: tl, accept: true})
	h, tl = withKV(rawKV{key: "bomb.u8", typ: 9, val: cat(u32b(uint32(TypeUint8)), u64b(MaxArrayLen+1))})
	bombs = append(bombs, bomb{name: "UINT8 array of 2^30+1", head: h, gap: MaxArrayLen + 1, tail: tl, want: "MaxArrayLen"})

	dir := t.TempDir()
	shell, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to set the limit with")
	}
	for i, b := range bombs {
		path := filepath.Join(dir, fmt.Sprintf("bomb%d.gguf", i))
		sparseFile(t, path, b.head, b.gap, b.tail, b.size)
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(shell, "-c", fmt.Sprintf("ulimit -v %d && exec \"$0\"", memLimitKiB), os.Args[0])
		cmd.Env = append(os.Environ(), memChildEnv+"="+path, "GOMAXPROCS=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: the child failed under a %d MiB address-space limit: %v\n%s", b.name, memLimitKiB>>10, err, out)
		}
		rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss >> 10
		got := strings.TrimSpace(string(out))
		t.Logf("%-24s %5d MiB file: peak RSS %3d MiB: %s", b.name, st.Size()>>20, rss, got)
		switch {
		case b.accept && !strings.HasPrefix(got, "accepted"):
			t.Errorf("%s: refused, but llama.cpp accepts it", b.name)
		case !b.accept && (!strings.HasPrefix(got, "refused") || !strings.Contains(got, path) || !strings.Contains(got, b.want)):
			t.Errorf("%s: want a refusal naming the file and %q", b.name, b.want)
		}
	}
}
