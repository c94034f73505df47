package quantize

// Golden files: what ggml wrote and decoded, kept under testdata/golden so
// that the codec comparisons run on a machine without the llama.cpp runtime.
//
// Every test that compares a codec with ggml runs its body through
// withReferences, twice:
//
//   - "golden" compares ours with testdata/golden/<Test>.gob.gz, a recording
//     of ggml's outputs on the test's golden-sized data set. It never skips.
//     Each recorded call carries the sha256 of its inputs, so a changed input
//     generator fails instead of comparing other data with the old outputs;
//     when the runtime is loaded, every record is also checked against the
//     live ggml (a stale golden fails). `go test ./quantize -update` with
//     PHYSARIUM_LLAMA set rewrites the files from the live ggml.
//   - "ggml" compares ours with the live ggml on the full data set, and
//     skips when the runtime is not loaded (no PHYSARIUM_LLAMA, no cgo).
//
// Encoded blocks are stored whole. Decoded values are stored as the first 8
// bytes of the sha256 of each group of values (one block or more, at most
// goldenMaxGroups groups per call), which keeps the files small and still
// names the block that differs.

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/internal/ggmlref"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/golden from the live ggml (needs PHYSARIUM_LLAMA and cgo)")

// goldenMaxGroups bounds the decode hashes stored per call.
const goldenMaxGroups = 256

// reference is what a test compares our codecs with: the live ggml, the
// golden recording of it, or both.
type reference struct {
	lib  *ggmlref.Lib // nil when the runtime is not loaded
	gold *goldenFile  // nil in the live run
	// spareLive leaves out the golden run's check of encode records against
	// the live ggml, for types whose ggml set-up is too slow to run on every
	// test (the live run leaves them out too).
	spareLive bool
}

// golden reports whether this is the golden run, whose data sets are the
// smaller ones the golden files were recorded from.
func (r *reference) golden() bool { return r.gold != nil }

// simdSettings lists the SetSIMD settings each of our computations runs
// under: in the golden run both paths (when the SIMD paths are on), so that
// the pure-Go twins are checked against ggml's outputs too; otherwise the
// current setting.
func (r *reference) simdSettings() []bool {
	if r.gold != nil && SIMD() != "go" {
		return []bool{true, false}
	}
	return []bool{!simdOff.Load()}
}

// withReferences runs body against the golden file of the calling test
// ("golden", never skipped) and against the live ggml ("ggml", skipped
// without the runtime). The file is testdata/golden/<test>.gob.gz, with the
// slashes of a subtest's name as underscores.
func withReferences(t *testing.T, body func(t *testing.T, ref *reference)) {
	t.Helper()
	file := strings.ReplaceAll(t.Name(), "/", "_")
	t.Run("golden", func(t *testing.T) {
		ref := &reference{lib: goldenLib(t)}
		ref.gold = openGolden(t, file, ref.lib)
		body(t, ref)
	})
	t.Run("ggml", func(t *testing.T) { body(t, &reference{lib: oracle(t)}) })
}

// goldenLib loads ggml for the golden run: required under -update, used for
// the staleness check when present, nil otherwise.
func goldenLib(t *testing.T) *ggmlref.Lib {
	l, err := ggmlref.Load()
	switch {
	case err == nil:
		return l
	case *updateGolden:
		t.Fatalf("-update needs the live ggml: %v", err)
	case !errors.Is(err, ggmlref.ErrNoLlama) && !errors.Is(err, ggmlref.ErrNoCgo):
		t.Fatal(err)
	}
	return nil
}

// goldenRecord is one recorded call to ggml.
type goldenRecord struct {
	Key    string   // the subtest's name below "golden" and the call's number in it
	Input  [32]byte // sha256 of the operation, type, shape and input bits
	Err    string   // ggml's refusal, when it refused
	Bytes  []byte   // encode: the bytes ggml wrote
	Group  int      // decode: values per hashed group
	Hashes []byte   // decode: 8 bytes of sha256 per group of decoded values
}

// goldenFile is the recording of one top-level test.
type goldenFile struct {
	path    string
	prefix  string // t.Name() of the golden subtest, plus "/"
	update  bool
	mu      sync.Mutex
	records map[string]*goldenRecord
	used    map[string]bool
	calls   map[string]int
}

func openGolden(t *testing.T, file string, lib *ggmlref.Lib) *goldenFile {
	top, _, _ := strings.Cut(t.Name(), "/")
	g := &goldenFile{
		path:    filepath.Join("testdata", "golden", file+".gob.gz"),
		prefix:  t.Name() + "/",
		update:  *updateGolden,
		records: map[string]*goldenRecord{},
		used:    map[string]bool{},
		calls:   map[string]int{},
	}
	partial := partialRun()
	if g.update {
		if partial {
			t.Fatal("-update rewrites whole golden files: select top-level tests only in -run")
		}
		t.Cleanup(func() {
			if !t.Failed() {
				if err := g.write(); err != nil {
					t.Error(err)
				}
			}
		})
		return g
	}
	if err := g.read(); err != nil {
		t.Fatalf("%v (record it with: PHYSARIUM_LLAMA=... go test ./quantize -run '^%s$' -update)", err, top)
	}
	t.Cleanup(func() {
		if t.Failed() || partial {
			return
		}
		for _, k := range slices.Sorted(maps.Keys(g.records)) {
			if !g.used[k] {
				t.Errorf("%s: record %q was not checked: the test makes fewer calls than were recorded; rerun with -update", g.path, k)
				return
			}
		}
	})
	return g
}

// partialRun reports whether -run selects only some subtests of the golden
// runs (then unchecked records are expected, and -update would drop some).
// "-run X/golden" selects whole golden runs.
func partialRun() bool {
	_, sub, ok := strings.Cut(flag.Lookup("test.run").Value.String(), "/")
	return ok && sub != "golden" && sub != "^golden$"
}

func (g *goldenFile) read() error {
	raw, err := os.ReadFile(g.path)
	if err != nil {
		return fmt.Errorf("golden: %w", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("golden %s: %w", g.path, err)
	}
	var recs []goldenRecord
	if err := gob.NewDecoder(zr).Decode(&recs); err != nil {
		return fmt.Errorf("golden %s: %w", g.path, err)
	}
	for i := range recs {
		g.records[recs[i].Key] = &recs[i]
	}
	return nil
}

func (g *goldenFile) write() error {
	recs := make([]goldenRecord, 0, len(g.records))
	for _, k := range slices.Sorted(maps.Keys(g.records)) {
		recs = append(recs, *g.records[k])
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err := gob.NewEncoder(zw).Encode(recs); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(g.path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(g.path, buf.Bytes(), 0o644)
}

// record returns the stored record of t's next call, after checking that
// its inputs hash to what was recorded; under -update it makes a new one
// from fill.
func (g *goldenFile) record(t *testing.T, input [32]byte, fill func(*goldenRecord)) *goldenRecord {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	name := strings.TrimPrefix(t.Name(), g.prefix)
	key := fmt.Sprintf("%s#%d", name, g.calls[name])
	g.calls[name]++
	if g.update {
		rec := &goldenRecord{Key: key, Input: input}
		fill(rec)
		g.records[key] = rec
		return rec
	}
	rec := g.records[key]
	if rec == nil {
		t.Fatalf("%s: no record %q: rerun with -update", g.path, key)
	}
	if rec.Input != input {
		t.Fatalf("%s: record %q was made from other inputs (a changed generator or test): rerun with -update", g.path, key)
	}
	g.used[key] = true
	return rec
}

// inputHash hashes an operation's name, type, shape and input.
func inputHash(op string, typ gguf.Type, shape []int, data []byte) [32]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%s %d %v %d\n", op, typ, shape, len(data))
	h.Write(data)
	var s [32]byte
	h.Sum(s[:0])
	return s
}

func floatBytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// encoded returns the bytes ggml_quantize_chunk writes for nrows rows of
// ncols values of src, or ggml's refusal.
func (r *reference) encoded(t *testing.T, typ gguf.Type, src []float32, nrows, ncols int) ([]byte, error) {
	t.Helper()
	ti, _ := typ.Info()
	return r.encodedBy(t, "encode", typ, []int{nrows, ncols}, src, len(src)/ti.BlockSize*ti.BlockBytes,
		func(dst []byte) error { return r.lib.Quantize(typ, dst, src, nrows, ncols) })
}

// encodedRef returns the bytes ggml's from_float_ref writes for src.
func (r *reference) encodedRef(t *testing.T, typ gguf.Type, src []float32) ([]byte, error) {
	t.Helper()
	ti, _ := typ.Info()
	return r.encodedBy(t, "encode-ref", typ, nil, src, len(src)/ti.BlockSize*ti.BlockBytes,
		func(dst []byte) error { return r.lib.QuantizeRef(typ, dst, src) })
}

func (r *reference) encodedBy(t *testing.T, op string, typ gguf.Type, shape []int, src []float32, n int, live func([]byte) error) ([]byte, error) {
	t.Helper()
	run := func() ([]byte, error) {
		dst := make([]byte, n)
		if err := live(dst); err != nil {
			return nil, err
		}
		return dst, nil
	}
	if r.gold == nil {
		return run()
	}
	rec := r.gold.record(t, inputHash(op, typ, shape, floatBytes(src)), func(rec *goldenRecord) {
		b, err := run()
		rec.Bytes = b
		if err != nil {
			rec.Err = err.Error()
		}
	})
	if r.lib != nil && !r.gold.update && !r.spareLive {
		b, err := run()
		if fmt.Sprint(err) != fmt.Sprint(errOrNil(rec.Err)) || !bytes.Equal(b, rec.Bytes) {
			t.Fatalf("%s: %s %s: the live ggml differs from the golden record: rerun with -update", r.gold.path, op, typ)
		}
	}
	if rec.Err != "" {
		return nil, errors.New(rec.Err)
	}
	return rec.Bytes, nil
}

func errOrNil(s string) error {
	if s == "" {
		return nil
	}
	return errors.New(s)
}

// decodeGroup is the number of values hashed together for n decoded values
// of a type with the given block size.
func decodeGroup(n, blockSize int) int {
	g := max(32, blockSize)
	for (n+g-1)/g > goldenMaxGroups {
		g *= 2
	}
	return g
}

// groupHashes returns 8 bytes of sha256 per group of values.
func groupHashes(v []float32, group int) []byte {
	var out []byte
	for lo := 0; lo < len(v); lo += group {
		s := sha256.Sum256(floatBytes(v[lo:min(lo+group, len(v))]))
		out = append(out, s[:8]...)
	}
	return out
}

// decoded returns what ggml's to_float gives for blocks: the values when
// the live ggml is loaded, and in the golden run the recorded group hashes.
func (r *reference) decoded(t *testing.T, typ gguf.Type, ti gguf.TypeInfo, blocks []byte) (want []float32, group int, hashes []byte) {
	t.Helper()
	n := len(blocks) / ti.BlockBytes * ti.BlockSize
	if r.lib != nil {
		want = make([]float32, n)
		if err := r.lib.Dequantize(typ, want, blocks); err != nil {
			t.Fatalf("ggml: %v", err)
		}
	}
	if r.gold == nil {
		return want, 0, nil
	}
	group = decodeGroup(n, ti.BlockSize)
	rec := r.gold.record(t, inputHash("decode", typ, nil, blocks), func(rec *goldenRecord) {
		rec.Group, rec.Hashes = group, groupHashes(want, group)
	})
	if want != nil && (rec.Group != group || !bytes.Equal(rec.Hashes, groupHashes(want, group))) {
		t.Fatalf("%s: decode %s: the live ggml differs from the golden record: rerun with -update", r.gold.path, typ)
	}
	return want, rec.Group, rec.Hashes
}
