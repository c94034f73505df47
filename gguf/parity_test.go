package gguf_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/internal/ggmlref"
	"github.com/physarium/physarium-gguf/testmodels"
)

// llamaBug names a disagreement that is llama.cpp's fault, from our
// reader's error, or returns "". The list is short on purpose.
func llamaBug(ours error, theirs ggmlref.Verdict) string {
	// ggml_nelements multiplies the four dimensions in int64; a product
	// that wraps to 0 (ne = [512, 2^62]) skips gguf.cpp's overflow test
	// and llama.cpp accepts a tensor of 2^71 elements and 0 bytes. The
	// reader refuses it.
	if theirs.Accepted && ours != nil && strings.Contains(ours.Error(), "element count overflows int64") {
		return "element count wraps to 0 in int64"
	}
	return ""
}

// parityBases are the valid files the corpus mutates: the real
// stories260K, a generated Q4_K model and the small handmade file.
func parityBases(t *testing.T) []gguf.ParityBase {
	t.Helper()
	stories, err := os.ReadFile(filepath.Join("..", "..", "shared", "models", "stories260K.gguf"))
	if err != nil {
		t.Fatalf("the real model: %v", err)
	}
	c := testmodels.DefaultConfig()
	c.Type = gguf.TypeQ4_K
	c.Layers = 1
	path := filepath.Join(t.TempDir(), "q4k.gguf")
	if err := testmodels.Write(path, c, gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	q4k, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return []gguf.ParityBase{{Name: "stories260K", Data: stories}, {Name: "q4k", Data: q4k}}
}

// TestParityWithLlamaCpp generates a corpus of hostile files from seeds
// and gives each to the reader and to llama.cpp's own parser
// (gguf_init_from_buffer with no_alloc, then llama_model_loader's check
// that tensor data lie inside the file): both must accept or both refuse,
// except for the llama.cpp bugs llamaBug lists.
func TestParityWithLlamaCpp(t *testing.T) {
	lib, err := ggmlref.Load()
	if errors.Is(err, ggmlref.ErrNoLlama) || errors.Is(err, ggmlref.ErrNoCgo) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	type tally struct {
		both, neither, bugs int
		ours, theirs        time.Duration
	}
	per := map[string]*tally{}
	var total tally
	var bugs []string
	fails, viaFile := 0, 0
	dir := t.TempDir()
	err = gguf.EachParityCase(parityBases(t), 1, 150, func(c gguf.ParityCase) {
		tl := per[c.Class]
		if tl == nil {
			tl = &tally{}
			per[c.Class] = tl
		}
		t0 := time.Now()
		f, ours := gguf.NewReader(bytes.NewReader(c.Data), int64(len(c.Data)))
		if ours == nil {
			f.Close()
		}
		t1 := time.Now()
		theirs := lib.ParseGGUF(c.Data)
		tl.ours += t1.Sub(t0)
		tl.theirs += time.Since(t1)
		// Every 50th file also goes through gguf_init_from_file, the entry
		// llama.cpp's loader uses: it must say what the buffer entry says.
		if (total.both+total.neither+total.bugs+fails)%50 == 0 {
			path := filepath.Join(dir, "case.gguf")
			if err := os.WriteFile(path, c.Data, 0o644); err != nil {
				t.Fatal(err)
			}
			if v := lib.ParseGGUFFile(path, int64(len(c.Data))); v.Accepted != theirs.Accepted {
				t.Errorf("%s: gguf_init_from_file accepted=%v (%s), gguf_init_from_buffer accepted=%v (%s)", c.Name, v.Accepted, v.Reason, theirs.Accepted, theirs.Reason)
			}
			viaFile++
		}
		switch {
		case ours == nil && theirs.Accepted:
			tl.both++
			total.both++
		case ours != nil && !theirs.Accepted:
			tl.neither++
			total.neither++
		default:
			if bug := llamaBug(ours, theirs); bug != "" {
				tl.bugs++
				total.bugs++
				bugs = append(bugs, c.Name+": "+bug)
				return
			}
			fails++
			if fails <= 20 {
				t.Errorf("%s (%d bytes): reader %v; llama.cpp accepted=%v %s", c.Name, len(c.Data), ours, theirs.Accepted, theirs.Reason)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if fails > 20 {
		t.Errorf("... %d disagreements in all", fails)
	}
	classes := make([]string, 0, len(per))
	for k := range per {
		classes = append(classes, k)
	}
	sort.Strings(classes)
	for _, k := range classes {
		tl := per[k]
		t.Logf("%-12s %5d files: %5d accepted by both, %5d refused by both, %d llama.cpp bugs (reader %.2f s, llama.cpp %.2f s)",
			k, tl.both+tl.neither+tl.bugs, tl.both, tl.neither, tl.bugs, tl.ours.Seconds(), tl.theirs.Seconds())
	}
	n := total.both + total.neither + total.bugs + fails
	t.Logf("parity: %d files in %.1f s: %d accepted by both, %d refused by both, %d listed llama.cpp bugs, %d disagreements (%d also read by gguf_init_from_file)",
		n, time.Since(start).Seconds(), total.both, total.neither, total.bugs, fails, viaFile)
	for _, b := range bugs {
		t.Logf("llama.cpp bug: %s", b)
	}
	if n < 2000 {
		t.Errorf("corpus of %d files, want at least 2000", n)
	}
}

// TestCorruptTypeRefused changes the type of blk.0.ffn_norm.weight (F32,
// 256 values) of a generated Q4_K model to Q8_K, one byte: the tensor
// shrinks from 1024 to 292 bytes, the tensors after it are where a wrong
// size puts them, and the reader refuses the file as llama.cpp does, with
// the same offsets in its words. It used to accept it.
func TestCorruptTypeRefused(t *testing.T) {
	c := testmodels.DefaultConfig()
	c.Type, c.Layers = gguf.TypeQ4_K, 1
	path := filepath.Join(t.TempDir(), "q4k.gguf")
	if err := testmodels.Write(path, c, gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	name := []byte("blk.0.ffn_norm.weight")
	i := bytes.Index(b, name)
	if i < 0 {
		t.Fatal("no blk.0.ffn_norm.weight")
	}
	at := i + len(name) + 4 + 8 // name, n_dims (1), ne[0], then the type
	if b[i+len(name)] != 1 || b[at] != byte(gguf.TypeF32) {
		t.Fatalf("unexpected layout at %d", at)
	}
	b[at] = byte(gguf.TypeQ8_K)
	_, err = gguf.NewReader(bytes.NewReader(b), int64(len(b)))
	if !errors.Is(err, gguf.ErrOffset) {
		t.Fatalf("reader: %v, want ErrOffset", err)
	}
	lib, lerr := ggmlref.Load()
	if lerr != nil {
		t.Logf("llama.cpp not asked: %v", lerr)
		return
	}
	v := lib.ParseGGUF(b)
	words := regexp.MustCompile(`offset \d+, expected \d+`).FindString(v.Reason)
	if v.Accepted || words == "" || !strings.Contains(err.Error(), words) {
		t.Fatalf("llama.cpp: %+v; reader: %v", v, err)
	}
	t.Logf("reader: %v\nllama.cpp: %s", err, v.Reason)
}
