// Package imatrix reads the importance matrices that llama.cpp's
// llama-imatrix writes, in both of its formats:
//
//   - GGUF (the default since 2025): general.type = "imatrix", the keys
//     imatrix.datasets (ARRAY of STRING), imatrix.chunk_count and
//     imatrix.chunk_size (UINT32), and for every weight tensor NAME two F32
//     tensors: NAME.in_sum2 of shape [n, n_mat] (the raw sums of squared
//     inputs, one row per expert) and NAME.counts of shape [1, n_mat] (the
//     number of input rows each expert saw).
//   - legacy .dat: little-endian int32 n_entries; per entry int32 name
//     length, the name bytes, int32 ncall, int32 nval, nval float32 values
//     (each value is (sum/count)*ncall); then optionally int32 chunk count,
//     int32 dataset-name length and the dataset name.
//
// From either, Entry.Scales gives the activation scale of every input
// column, a_i = sqrt(sum_i / count), with a count of 0 read as 1 (as
// llama.cpp does). The package validates every length against the file
// size before allocating and names the file and the entry in its errors.
package imatrix

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/physarium/physarium-gguf/gguf"
)

// Format names the file format an importance matrix was read from.
type Format string

const (
	// GGUF is llama-imatrix's GGUF output (general.type = imatrix).
	GGUF Format = "gguf"
	// Legacy is llama-imatrix's older .dat output (--output-format dat).
	Legacy Format = "dat"
)

// Entry is the importance data of one weight tensor.
type Entry struct {
	// Name is the weight tensor's name, e.g. "blk.0.attn_q.weight".
	Name string
	// Sums holds the per-input-column statistics, matrix after matrix
	// (n_mat rows of len(Sums)/n_mat values). In a GGUF file they are the
	// raw sums of squared inputs; in a legacy file they are
	// (sum/count)*ncall, and Counts holds ncall.
	Sums []float32
	// Counts holds the divisor of each matrix's sums: one value per matrix
	// (GGUF; per expert for MoE), or a single value shared by every matrix
	// (legacy).
	Counts []float64
}

// Matrix is one importance-matrix file.
type Matrix struct {
	// Path is the file the matrix was read from.
	Path string
	// Format is the file's format.
	Format Format
	// Datasets are the calibration texts the matrix was computed over.
	Datasets []string
	// ChunkCount is the number of chunks processed (0 when not stored).
	ChunkCount int
	// ChunkSize is the tokens per chunk (0 when not stored; always 0 for
	// the legacy format).
	ChunkSize int
	// Entries maps a weight tensor's name to its entry.
	Entries map[string]*Entry
}

// Load reads an importance matrix, choosing the format by the file's magic:
// "GGUF" means the GGUF format, anything else the legacy one.
func Load(path string) (*Matrix, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("imatrix: %w", err)
	}
	var magic [4]byte
	_, err = io.ReadFull(fh, magic[:])
	fh.Close()
	if err != nil {
		return nil, fmt.Errorf("imatrix: %s: too short to be an importance matrix: %w", path, err)
	}
	if string(magic[:]) == "GGUF" {
		return loadGGUF(path)
	}
	return loadLegacy(path)
}

// Describe returns the file's base name, datasets and chunk figures in the
// form stored in physarium.imatrix:
// "<base name> format=<gguf|dat> datasets=<a,b> chunks=<N> chunk_size=<M>".
func (m *Matrix) Describe() string {
	ds := strings.Join(m.Datasets, ",")
	if ds == "" {
		ds = "(none recorded)"
	}
	return fmt.Sprintf("%s format=%s datasets=%s chunks=%d chunk_size=%d", filepath.Base(m.Path), m.Format, ds, m.ChunkCount, m.ChunkSize)
}

// Names returns the entry names in sorted order.
func (m *Matrix) Names() []string {
	names := make([]string, 0, len(m.Entries))
	for n := range m.Entries {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Scales returns the activation scale of every input column of a tensor
// with rows of n values and mats matrices (experts), matrix after matrix:
// a[m*n+i] = sqrt(sum / count) with count 0 read as 1. The entry must hold
// exactly n*mats sums and either one count or mats counts; anything else is
// an error naming the entry.
func (e *Entry) Scales(n, mats int) ([]float32, error) {
	return e.perColumn(n, mats, math.Sqrt)
}

// Weights returns the importance weight of every input column, laid out
// as Scales: w[m*n+i] = sum / count with count 0 read as 1, the weight
// llama-quantize gives ggml's encoders for every row of matrix m.
func (e *Entry) Weights(n, mats int) ([]float32, error) {
	return e.perColumn(n, mats, func(x float64) float64 { return x })
}

// perColumn returns f(sum / count) for every input column (see Scales).
func (e *Entry) perColumn(n, mats int, f func(float64) float64) ([]float32, error) {
	if n <= 0 || mats <= 0 {
		return nil, fmt.Errorf("imatrix: entry %s: bad tensor shape %d x %d matrices", e.Name, n, mats)
	}
	if len(e.Sums)%n != 0 || len(e.Sums)/n != mats {
		return nil, fmt.Errorf("imatrix: entry %s holds %d values, the tensor needs %d (%d columns x %d matrices)", e.Name, len(e.Sums), n*mats, n, mats)
	}
	if len(e.Counts) != 1 && len(e.Counts) != mats {
		return nil, fmt.Errorf("imatrix: entry %s holds %d counts, want 1 or %d (one per matrix)", e.Name, len(e.Counts), mats)
	}
	a := make([]float32, len(e.Sums))
	for m := 0; m < mats; m++ {
		c := e.Counts[0]
		if len(e.Counts) > 1 {
			c = e.Counts[m]
		}
		if c == 0 {
			c = 1
		}
		for i, s := range e.Sums[m*n : (m+1)*n] {
			a[m*n+i] = float32(f(float64(s) / c))
		}
	}
	return a, nil
}

// check validates the values of an entry: finite, non-negative sums and
// counts.
func (e *Entry) check() error {
	for i, s := range e.Sums {
		if !(s >= 0 && s <= math.MaxFloat32) {
			return fmt.Errorf("entry %s: value %d is %v (want finite, >= 0)", e.Name, i, s)
		}
	}
	for i, c := range e.Counts {
		if !(c >= 0 && c <= math.MaxFloat32) {
			return fmt.Errorf("entry %s: count %d is %v (want finite, >= 0)", e.Name, i, c)
		}
	}
	return nil
}

const (
	sumSuffix   = ".in_sum2"
	countSuffix = ".counts"
)

func loadGGUF(path string) (*Matrix, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("imatrix: %w", err)
	}
	defer f.Close()
	fail := func(format string, args ...any) error {
		return fmt.Errorf("imatrix: %s: "+format, append([]any{path}, args...)...)
	}
	m := &Matrix{Path: path, Format: GGUF, Entries: map[string]*Entry{}}
	if err := readGGUFKeys(f, m, fail); err != nil {
		return nil, err
	}
	pairs := pairTensors(f)
	if len(pairs) == 0 {
		return nil, fail("no %s/%s tensors: not an importance matrix", sumSuffix, countSuffix)
	}
	for name, p := range pairs {
		e, err := readPair(f, name, p, fail)
		if err != nil {
			return nil, err
		}
		m.Entries[name] = e
	}
	return m, nil
}

// readGGUFKeys refuses a GGUF that says it is not an imatrix and reads the
// datasets and chunk keys into m.
func readGGUFKeys(f *gguf.File, m *Matrix, fail func(string, ...any) error) error {
	if kv, ok := f.KV("general.type"); ok {
		if s, _ := kv.Value.Data.(string); s != "imatrix" {
			return fail("general.type is %v, not imatrix (is this a model file?)", kv.Value.Data)
		}
	}
	if kv, ok := f.KV("imatrix.datasets"); ok {
		ds, ok := kv.Value.Data.([]string)
		if !ok {
			return fail("imatrix.datasets is %s, want an array of strings", kv.Value.Type)
		}
		m.Datasets = ds
	}
	for _, k := range []struct {
		key string
		dst *int
	}{{"imatrix.chunk_count", &m.ChunkCount}, {"imatrix.chunk_size", &m.ChunkSize}} {
		if kv, ok := f.KV(k.key); ok {
			v, ok := kv.Value.Data.(uint32)
			if !ok {
				return fail("%s is %s, want UINT32", k.key, kv.Value.Type)
			}
			*k.dst = int(v)
		}
	}
	return nil
}

// tensorPair is an entry's sums and counts tensors, either possibly missing.
type tensorPair struct{ sums, counts *gguf.TensorInfo }

// pairTensors groups the .in_sum2 and .counts tensors by entry name.
func pairTensors(f *gguf.File) map[string]*tensorPair {
	pairs := map[string]*tensorPair{}
	for i := range f.Tensors {
		t := &f.Tensors[i]
		name, which := t.Name, 0
		switch {
		case strings.HasSuffix(name, sumSuffix):
			name, which = strings.TrimSuffix(name, sumSuffix), 1
		case strings.HasSuffix(name, countSuffix):
			name, which = strings.TrimSuffix(name, countSuffix), 2
		default:
			continue
		}
		if name == "" {
			continue
		}
		p := pairs[name]
		if p == nil {
			p = &tensorPair{}
			pairs[name] = p
		}
		if which == 1 {
			p.sums = t
		} else {
			p.counts = t
		}
	}
	return pairs
}

// readPair checks an entry's two tensors against each other and reads them.
func readPair(f *gguf.File, name string, p *tensorPair, fail func(string, ...any) error) (*Entry, error) {
	if p.sums == nil || p.counts == nil {
		return nil, fail("entry %s: has only one of %s and %s", name, sumSuffix, countSuffix)
	}
	for _, t := range []*gguf.TensorInfo{p.sums, p.counts} {
		if t.Type != gguf.TypeF32 {
			return nil, fail("entry %s: tensor %s is %s, want F32", name, t.Name, t.Type)
		}
	}
	if len(p.sums.Shape) == 0 {
		return nil, fail("entry %s: tensor %s has no dimensions", name, p.sums.Name)
	}
	nmat := uint64(1)
	for _, d := range p.sums.Shape[1:] {
		nmat *= d
	}
	if p.counts.Elements() != nmat {
		return nil, fail("entry %s: %d counts for %d matrices of sums (shapes %v and %v)", name, p.counts.Elements(), nmat, p.sums.Shape, p.counts.Shape)
	}
	sums, err := readF32(f, *p.sums)
	if err != nil {
		return nil, fail("entry %s: %v", name, err)
	}
	counts, err := readF32(f, *p.counts)
	if err != nil {
		return nil, fail("entry %s: %v", name, err)
	}
	e := &Entry{Name: name, Sums: sums, Counts: make([]float64, len(counts))}
	for i, c := range counts {
		// llama.cpp rounds the stored float counts to integers.
		e.Counts[i] = math.Round(float64(c))
		if math.IsNaN(float64(c)) {
			e.Counts[i] = math.NaN()
		}
	}
	if err := e.check(); err != nil {
		return nil, fail("%v", err)
	}
	return e, nil
}

// readF32 reads an F32 tensor; the gguf reader has already checked that it
// lies inside the file, which bounds the allocation.
func readF32(f *gguf.File, t gguf.TensorInfo) ([]float32, error) {
	return readValues(f, t, 4, func(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) })
}

// readValues reads tensor t of the checked file f, decoding each value of
// size bytes with dec.
func readValues[T any](f *gguf.File, t gguf.TensorInfo, size int, dec func([]byte) T) ([]T, error) {
	buf := make([]byte, t.Bytes())
	if _, err := f.ReadAt(buf, f.DataOffset+int64(t.Offset)); err != nil {
		return nil, fmt.Errorf("read tensor %s: %w", t.Name, err)
	}
	out := make([]T, t.Elements())
	for i := range out {
		out[i] = dec(buf[size*i:])
	}
	return out, nil
}

// legacyReader reads little-endian fields of a legacy file held in memory,
// failing cleanly at the end of the data.
type legacyReader struct {
	b   []byte
	off int
}

var errTrunc = errors.New("unexpected end of file")

func (r *legacyReader) i32() (int32, error) {
	if len(r.b)-r.off < 4 {
		return 0, errTrunc
	}
	v := int32(binary.LittleEndian.Uint32(r.b[r.off:]))
	r.off += 4
	return v, nil
}

func (r *legacyReader) bytes(n int) ([]byte, error) {
	if n < 0 || len(r.b)-r.off < n {
		return nil, errTrunc
	}
	v := r.b[r.off : r.off+n]
	r.off += n
	return v, nil
}

// maxLegacyBytes bounds the size of a legacy file read into memory.
const maxLegacyBytes = 1 << 32

// maxLegacyName bounds the length of an entry name in a legacy file.
const maxLegacyName = 1 << 16

func loadLegacy(path string) (*Matrix, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("imatrix: %w", err)
	}
	if st.Size() > maxLegacyBytes {
		return nil, fmt.Errorf("imatrix: %s: legacy file of %d bytes is larger than the %d-byte limit", path, st.Size(), int64(maxLegacyBytes))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("imatrix: %w", err)
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("imatrix: %s (legacy format): "+format, append([]any{path}, args...)...)
	}
	r := &legacyReader{b: data}
	n, err := r.i32()
	if err != nil {
		return nil, fail("no entry count: %v", err)
	}
	// Each entry takes at least 4+0+4+4+4 bytes.
	if n < 1 || int64(n) > int64(len(data))/16 {
		return nil, fail("entry count %d does not fit the file's %d bytes (neither GGUF nor a legacy imatrix?)", n, len(data))
	}
	m := &Matrix{Path: path, Format: Legacy, Entries: map[string]*Entry{}}
	for i := 0; i < int(n); i++ {
		e, err := r.entry(i, m, fail)
		if err != nil {
			return nil, err
		}
		m.Entries[e.Name] = e
	}
	if err := r.trailer(m, fail); err != nil {
		return nil, err
	}
	return m, nil
}

// entry reads the i-th entry (name, call count, values), refusing a name
// that is empty or already in m.
func (r *legacyReader) entry(i int, m *Matrix, fail func(string, ...any) error) (*Entry, error) {
	ln, err := r.i32()
	if err != nil {
		return nil, fail("entry %d: name length: %v", i, err)
	}
	if ln < 0 || ln > maxLegacyName {
		return nil, fail("entry %d: name length %d", i, ln)
	}
	nb, err := r.bytes(int(ln))
	if err != nil {
		return nil, fail("entry %d: name: %v", i, err)
	}
	name := string(nb)
	if i := bytes.IndexByte(nb, 0); i >= 0 {
		name = string(nb[:i]) // llama.cpp reads the name as a C string
	}
	if name == "" {
		return nil, fail("entry %d: empty name", i)
	}
	if _, dup := m.Entries[name]; dup {
		return nil, fail("entry %d: %s appears twice", i, strconv.Quote(name))
	}
	ncall, err := r.i32()
	if err != nil {
		return nil, fail("entry %s: call count: %v", name, err)
	}
	nval, err := r.i32()
	if err != nil {
		return nil, fail("entry %s: value count: %v", name, err)
	}
	if ncall < 0 {
		return nil, fail("entry %s: call count %d is negative", name, ncall)
	}
	if nval < 1 || int64(nval)*4 > int64(len(r.b)-r.off) {
		return nil, fail("entry %s: %d values do not fit the %d bytes left", name, nval, len(r.b)-r.off)
	}
	vb, _ := r.bytes(int(nval) * 4)
	e := &Entry{Name: name, Sums: make([]float32, nval), Counts: []float64{float64(ncall)}}
	for j := range e.Sums {
		e.Sums[j] = math.Float32frombits(binary.LittleEndian.Uint32(vb[4*j:]))
	}
	if err := e.check(); err != nil {
		return nil, fail("%v", err)
	}
	return e, nil
}

// trailer reads the optional trailer (chunk count, dataset name) into m
// and refuses anything after it.
func (r *legacyReader) trailer(m *Matrix, fail func(string, ...any) error) error {
	if r.off >= len(r.b) {
		return nil
	}
	c, err := r.i32()
	if err != nil {
		return fail("trailer: chunk count: %v", err)
	}
	if c < 0 {
		return fail("trailer: chunk count %d is negative", c)
	}
	m.ChunkCount = int(c)
	if r.off < len(r.b) {
		ln, err := r.i32()
		if err != nil {
			return fail("trailer: dataset name length: %v", err)
		}
		if ln > 0 {
			ds, err := r.bytes(int(ln))
			if err != nil {
				return fail("trailer: dataset name of %d bytes: %v", ln, err)
			}
			m.Datasets = []string{string(ds)}
		}
	}
	if r.off != len(r.b) {
		return fail("%d bytes of garbage after the trailer", len(r.b)-r.off)
	}
	return nil
}
