package imatrix

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"sort"

	"github.com/physarium/physarium-gguf/gguf"
)

// A calibration file is a llama-imatrix GGUF file (the <name>.in_sum2 and
// <name>.counts tensors and the imatrix.* keys, which llama-quantize and
// prune read as they are) with more tensors and keys beside it:
//
//   - per weight tensor NAME, F64 tensors of shape [n, n_mat]: NAME.in_sum
//     (sum x_j), NAME.in_abs (sum |x_j|), NAME.in_sq (sum x_j^2, of which
//     in_sum2 holds the same sum accumulated in float32, as llama-imatrix does) and NAME.in_n of shape [1, n_mat] (the
//     tokens each matrix saw);
//   - per distinct input (the activation several weights read, e.g. the
//     attention norm's output that attn_q, attn_k and attn_v multiply),
//     named after the first weight that reads it, INPUT.gram of shape
//     [n(n+1)/2, n_mat], F64: the Gram matrix sum x x^T of each matrix,
//     lower triangle packed row by row (row i holds its i+1 values
//     G[i][0..i]), and INPUT.gram_n of shape [1, n_mat];
//   - the keys calibrate.tensors and calibrate.tensor_inputs (parallel
//     arrays: each weight and the input it reads), calibrate.inputs and
//     calibrate.input_nodes (each input and the graph node it was read
//     from), and the run's provenance (CalibrationKeys).
//
// The Gram is stored in F64: its entries are sums over every calibration
// token, and a solver that inverts it (SparseGPT) amplifies relative
// errors by its condition number, which F32's 6e-8 cannot afford on
// near-singular inputs; the moments are F64 for the same reason.

// Tensor suffixes of a calibration file.
const (
	SumSuffix   = ".in_sum"
	AbsSuffix   = ".in_abs"
	SqSuffix    = ".in_sq"
	NSuffix     = ".in_n"
	GramSuffix  = ".gram"
	GramNSuffix = ".gram_n"
)

// Keys of a calibration file.
const (
	KeyTensors      = "calibrate.tensors"
	KeyTensorInputs = "calibrate.tensor_inputs"
	KeyInputs       = "calibrate.inputs"
	KeyInputNodes   = "calibrate.input_nodes"
	KeyText         = "calibrate.text"
	KeyTextSHA256   = "calibrate.text_sha256"
	KeyModel        = "calibrate.model"
	KeyModelSHA256  = "calibrate.model_sha256"
	KeyLlama        = "calibrate.llama"
	KeyCtx          = "calibrate.ctx"
	KeyChunks       = "calibrate.chunks"
	KeyTokens       = "calibrate.tokens"
	KeyGram         = "calibrate.gram"
)

// Moments are the per-input-channel statistics of one weight tensor's
// input, matrix after matrix (one matrix per expert for MoE).
type Moments struct {
	// Name is the weight tensor, e.g. "blk.0.attn_q.weight".
	Name string
	// Input names the Input the weight reads.
	Input string
	// Width is the number of input channels; Mats the number of matrices.
	Width, Mats int
	// Count holds the tokens each matrix saw.
	Count []float64
	// Sum, Abs and Sq hold sum x_j, sum |x_j| and sum x_j^2, Mats rows of
	// Width values.
	Sum, Abs, Sq []float64
	// Sq32, when set, is sum x_j^2 accumulated in float32 token by token,
	// as llama-imatrix accumulates it: written as in_sum2 so that the
	// importance matrix is llama-imatrix's to the bit (else in_sum2 is Sq
	// rounded to F32). It is not stored on its own: Load fills it from
	// in_sum2.
	Sq32 []float32
}

// Input is one distinct activation read by one or more weights.
type Input struct {
	// Name is the first weight (in graph order) that reads it.
	Name string
	// Node is the graph node it was read from, e.g. "attn_norm-0".
	Node string
	// Width is the number of channels; Mats the number of matrices.
	Width, Mats int
	// Count holds the tokens of each matrix's Gram (nil: no Gram).
	Count []float64
	// Gram holds Mats packed lower triangles (PackedLen(Width) values
	// each) when they are in memory: set by calibrate before writing, nil
	// in a loaded file, whose Grams Dense reads from the file on demand,
	// and nil when the Gram was not collected (HasGram).
	Gram []float64

	// file and gram are where a loaded file holds the Grams (file nil:
	// not in a file).
	file *gguf.File
	gram gguf.TensorInfo
}

// HasGram reports whether the input has Gram matrices, in memory or in
// its file.
func (in *Input) HasGram() bool { return in.Gram != nil || in.file != nil }

// Info is the provenance of a calibration run.
type Info struct {
	Text, TextSHA256 string
	// Model and ModelSHA256 are the model file's base name and sha256; for
	// a split model every shard's, in order, separated by ", ".
	Model, ModelSHA256 string
	Llama              string
	Ctx, Chunks        int
	Tokens             uint64
	Gram               bool
}

// Calibration is a calibration file: the importance matrix (Matrix, read
// by llama-quantize) and the tool's own statistics.
type Calibration struct {
	Matrix
	// Tensors maps a weight tensor's name to its moments.
	Tensors map[string]*Moments
	// Inputs holds the distinct inputs in graph order.
	Inputs []*Input
	// Info is the run's provenance.
	Info Info

	// file is the loaded file, open while its Grams may be read.
	file *gguf.File
}

// Close closes the file a loaded calibration reads its Grams from; Dense
// of its inputs fails afterwards. It does nothing for a calibration built
// in memory, nor for a nil one.
func (c *Calibration) Close() error {
	if c == nil || c.file == nil {
		return nil
	}
	err := c.file.Close()
	if err != nil {
		return fmt.Errorf("imatrix: %w", err)
	}
	return nil
}

// PackedLen returns n(n+1)/2, the length of a packed lower triangle.
func PackedLen(n int) int { return n * (n + 1) / 2 }

// PackedIndex returns the index of G[i][j] (either order) in a packed
// lower triangle.
func PackedIndex(i, j int) int {
	if j > i {
		i, j = j, i
	}
	return i*(i+1)/2 + j
}

// Packed returns matrix mat's Gram as a packed lower triangle
// (PackedLen(Width) values): from memory, or read from the loaded file
// (only that matrix's bytes, so a run holds the Grams it works on, not the
// file's).
func (in *Input) Packed(mat int) ([]float64, error) {
	p := PackedLen(in.Width)
	if mat < 0 || mat >= in.Mats || in.Gram == nil && in.file == nil || in.Gram != nil && len(in.Gram) < (mat+1)*p {
		return nil, fmt.Errorf("imatrix: input %s has no Gram for matrix %d", in.Name, mat)
	}
	if in.Gram != nil {
		return in.Gram[mat*p : (mat+1)*p], nil
	}
	buf := make([]byte, 8*p)
	off := in.file.DataOffset + int64(in.gram.Offset) + int64(mat)*int64(len(buf))
	if _, err := in.file.ReadAt(buf, off); err != nil {
		return nil, fmt.Errorf("imatrix: %s: tensor %s%s, matrix %d: %w", in.file.Path, in.Name, GramSuffix, mat, err)
	}
	g := make([]float64, p)
	for i := range g {
		g[i] = math.Float64frombits(binary.LittleEndian.Uint64(buf[8*i:]))
	}
	return g, nil
}

// Dense expands matrix mat's Gram (Packed) into the dense n x n row-major
// form (symmetric) that a SparseGPT solver takes; its token count is
// Count[mat]. Safe for concurrent use.
func (in *Input) Dense(mat int) ([]float64, error) {
	n := in.Width
	g, err := in.Packed(mat)
	if err != nil {
		return nil, err
	}
	d := make([]float64, n*n)
	for i := range n {
		row := g[i*(i+1)/2 : i*(i+1)/2+i+1]
		for j, v := range row {
			d[i*n+j] = v
			d[j*n+i] = v
		}
	}
	return d, nil
}

// sortedTensors returns the weight names in order.
func (c *Calibration) sortedTensors() []string {
	names := make([]string, 0, len(c.Tensors))
	for n := range c.Tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Header returns the calibration file's header: the imatrix keys, the
// calibrate.* keys, then per weight (in name order) in_sum2, counts,
// in_sum, in_abs, in_sq and in_n, then per input with a Gram (in Inputs
// order) gram and gram_n. An Input with Count set but Gram nil still gets
// its tensors: WriteGram streams them later (see calibrate).
func (c *Calibration) Header() (gguf.Header, error) {
	names := c.sortedTensors()
	var tensorInputs, inputs, nodes []string
	for _, n := range names {
		tensorInputs = append(tensorInputs, c.Tensors[n].Input)
	}
	for _, in := range c.Inputs {
		inputs = append(inputs, in.Name)
		nodes = append(nodes, in.Node)
	}
	i := c.Info
	h := gguf.Header{Version: 3, KVs: []gguf.KV{
		{Key: "general.type", Value: gguf.String("imatrix")},
		{Key: "imatrix.datasets", Value: gguf.Strings(append([]string{}, c.Datasets...))},
		{Key: "imatrix.chunk_count", Value: gguf.Uint32(uint32(c.ChunkCount))},
		{Key: "imatrix.chunk_size", Value: gguf.Uint32(uint32(c.ChunkSize))},
		{Key: KeyText, Value: gguf.String(i.Text)},
		{Key: KeyTextSHA256, Value: gguf.String(i.TextSHA256)},
		{Key: KeyModel, Value: gguf.String(i.Model)},
		{Key: KeyModelSHA256, Value: gguf.String(i.ModelSHA256)},
		{Key: KeyLlama, Value: gguf.String(i.Llama)},
		{Key: KeyCtx, Value: gguf.Uint32(uint32(i.Ctx))},
		{Key: KeyChunks, Value: gguf.Uint32(uint32(i.Chunks))},
		{Key: KeyTokens, Value: gguf.Uint64(i.Tokens)},
		{Key: KeyGram, Value: gguf.Bool(i.Gram)},
		{Key: KeyTensors, Value: gguf.Strings(names)},
		{Key: KeyTensorInputs, Value: gguf.Strings(tensorInputs)},
		{Key: KeyInputs, Value: gguf.Strings(inputs)},
		{Key: KeyInputNodes, Value: gguf.Strings(nodes)},
	}}
	for _, n := range names {
		m := c.Tensors[n]
		if m.Width <= 0 || m.Mats <= 0 {
			return gguf.Header{}, fmt.Errorf("imatrix: calibration of %s: shape %d x %d", n, m.Width, m.Mats)
		}
		w, k := uint64(m.Width), uint64(m.Mats)
		h.Tensors = append(h.Tensors,
			gguf.TensorInfo{Name: n + sumSuffix, Type: gguf.TypeF32, Shape: []uint64{w, k}},
			gguf.TensorInfo{Name: n + countSuffix, Type: gguf.TypeF32, Shape: []uint64{1, k}},
			gguf.TensorInfo{Name: n + SumSuffix, Type: gguf.TypeF64, Shape: []uint64{w, k}},
			gguf.TensorInfo{Name: n + AbsSuffix, Type: gguf.TypeF64, Shape: []uint64{w, k}},
			gguf.TensorInfo{Name: n + SqSuffix, Type: gguf.TypeF64, Shape: []uint64{w, k}},
			gguf.TensorInfo{Name: n + NSuffix, Type: gguf.TypeF64, Shape: []uint64{1, k}})
	}
	if i.Gram {
		for _, in := range c.Inputs {
			h.Tensors = append(h.Tensors,
				gguf.TensorInfo{Name: in.Name + GramSuffix, Type: gguf.TypeF64, Shape: []uint64{uint64(PackedLen(in.Width)), uint64(in.Mats)}},
				gguf.TensorInfo{Name: in.Name + GramNSuffix, Type: gguf.TypeF64, Shape: []uint64{1, uint64(in.Mats)}})
		}
	}
	return h, nil
}

func writeF32(w io.Writer, v []float32) error {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	_, err := w.Write(b)
	return err
}

func writeF64(w io.Writer, v []float64) error {
	const chunk = 1 << 16
	b := make([]byte, 0, 8*min(len(v), chunk))
	for len(v) > 0 {
		n := min(len(v), chunk)
		b = b[:0]
		for _, x := range v[:n] {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		v = v[n:]
	}
	return nil
}

// WriteMoments writes the per-weight tensors of Header, in its order, to
// w (a gguf.Writer positioned at the first tensor). in_sum2 is Sq32
// (or in_sq rounded to F32), counts is in_n as F32.
func (c *Calibration) WriteMoments(w io.Writer) error {
	for _, n := range c.sortedTensors() {
		m := c.Tensors[n]
		if len(m.Count) != m.Mats || len(m.Sum) != m.Width*m.Mats || len(m.Abs) != len(m.Sum) || len(m.Sq) != len(m.Sum) {
			return fmt.Errorf("imatrix: calibration of %s: moments of %d values for %d x %d", n, len(m.Sum), m.Width, m.Mats)
		}
		sq32 := m.Sq32
		if len(sq32) != len(m.Sq) {
			sq32 = make([]float32, len(m.Sq))
			for i, v := range m.Sq {
				sq32[i] = float32(v)
			}
		}
		n32 := make([]float32, len(m.Count))
		for i, v := range m.Count {
			n32[i] = float32(v)
		}
		if err := writeF32(w, sq32); err != nil {
			return err
		}
		if err := writeF32(w, n32); err != nil {
			return err
		}
		for _, v := range [][]float64{m.Sum, m.Abs, m.Sq, m.Count} {
			if err := writeF64(w, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteGram writes the input's gram and gram_n tensors to w.
func (in *Input) WriteGram(w io.Writer) error {
	if len(in.Gram) != PackedLen(in.Width)*in.Mats || len(in.Count) != in.Mats {
		return fmt.Errorf("imatrix: input %s: Gram of %d values for %d x %d", in.Name, len(in.Gram), in.Width, in.Mats)
	}
	if err := writeF64(w, in.Gram); err != nil {
		return err
	}
	return writeF64(w, in.Count)
}

// WriteGGUF writes the whole calibration (every Gram in memory) to path
// through a temporary file.
func (c *Calibration) WriteGGUF(path string, opts gguf.CreateOptions) error {
	h, err := c.Header()
	if err != nil {
		return err
	}
	w, err := gguf.Create(path, h, opts)
	if err != nil {
		return fmt.Errorf("imatrix: %w", err)
	}
	err = c.WriteMoments(w)
	if c.Info.Gram {
		for _, in := range c.Inputs {
			if err == nil {
				err = in.WriteGram(w)
			}
		}
	}
	if err != nil {
		w.Abort()
		return fmt.Errorf("imatrix: %s: %w", path, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("imatrix: %w", err)
	}
	return nil
}

// readF64 reads an F64 tensor that gguf.Open has checked lies in the file.
func readF64(f *gguf.File, t gguf.TensorInfo) ([]float64, error) {
	return readValues(f, t, 8, func(b []byte) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(b)) })
}

// LoadCalibration reads a calibration file: the importance matrix (as
// Load), every weight's moments and every input's Gram token counts. The
// Grams themselves stay in the file, which stays open: Input.Dense reads
// one matrix's Gram when it is asked for, so memory does not grow with the
// model's depth. Close the calibration when done.
func LoadCalibration(path string) (c *Calibration, err error) {
	m, err := Load(path)
	if err != nil {
		return nil, err
	}
	f, err := gguf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("imatrix: %w", err)
	}
	defer func() {
		if err != nil || !c.Info.Gram {
			f.Close()
		}
	}()
	r := calReader{path: path, f: f}
	c = &Calibration{Matrix: *m, Tensors: map[string]*Moments{}}
	names, err := r.strs(KeyTensors)
	if err != nil {
		return nil, err
	}
	tin, err := r.strs(KeyTensorInputs)
	if err != nil {
		return nil, err
	}
	inputs, err := r.strs(KeyInputs)
	if err != nil {
		return nil, err
	}
	nodes, err := r.strs(KeyInputNodes)
	if err != nil {
		return nil, err
	}
	if len(tin) != len(names) || len(nodes) != len(inputs) {
		return nil, r.errorf("%s and %s (or %s and %s) differ in length", KeyTensors, KeyTensorInputs, KeyInputs, KeyInputNodes)
	}
	r.readInfo(&c.Info)
	if err := r.readMoments(c, names, tin); err != nil {
		return nil, err
	}
	if err := r.readInputs(c, inputs, nodes); err != nil {
		return nil, err
	}
	return c, nil
}

// calReader reads the parts of one calibration file.
type calReader struct {
	path string
	f    *gguf.File
}

// errorf is an error that names the file.
func (r calReader) errorf(format string, args ...any) error {
	return fmt.Errorf("imatrix: %s: "+format, append([]any{r.path}, args...)...)
}

// strs reads a string-array key that every calibration file has.
func (r calReader) strs(key string) ([]string, error) {
	kv, ok := r.f.KV(key)
	if !ok {
		return nil, r.errorf("no %s: not a calibration file", key)
	}
	s, ok := kv.Value.Data.([]string)
	if !ok {
		return nil, r.errorf("%s is %s, want an array of strings", key, kv.Value.Type)
	}
	return s, nil
}

// readInfo reads the run's provenance; a key that is missing or of another
// type leaves its field zero.
func (r calReader) readInfo(info *Info) {
	for _, k := range []struct {
		key string
		dst *string
	}{{KeyText, &info.Text}, {KeyTextSHA256, &info.TextSHA256}, {KeyModel, &info.Model},
		{KeyModelSHA256, &info.ModelSHA256}, {KeyLlama, &info.Llama}} {
		if kv, ok := r.f.KV(k.key); ok {
			*k.dst, _ = kv.Value.Data.(string)
		}
	}
	if kv, ok := r.f.KV(KeyCtx); ok {
		v, _ := kv.Value.Data.(uint32)
		info.Ctx = int(v)
	}
	if kv, ok := r.f.KV(KeyChunks); ok {
		v, _ := kv.Value.Data.(uint32)
		info.Chunks = int(v)
	}
	if kv, ok := r.f.KV(KeyTokens); ok {
		info.Tokens, _ = kv.Value.Data.(uint64)
	}
	if kv, ok := r.f.KV(KeyGram); ok {
		info.Gram, _ = kv.Value.Data.(bool)
	}
}

// f64Info returns the F64 tensor name, which must hold elems values.
func (r calReader) f64Info(name string, elems uint64) (gguf.TensorInfo, error) {
	t, ok := r.f.Tensor(name)
	if !ok {
		return t, r.errorf("tensor %s missing", name)
	}
	if t.Type != gguf.TypeF64 || t.Elements() != elems {
		return t, r.errorf("tensor %s is %s of %d values, want F64 of %d", name, t.Type, t.Elements(), elems)
	}
	return t, nil
}

// f64 reads the F64 tensor name, which must hold elems values.
func (r calReader) f64(name string, elems uint64) ([]float64, error) {
	t, err := r.f64Info(name, elems)
	if err != nil {
		return nil, err
	}
	return readF64(r.f, t)
}

// readMoments reads each weight's sums, absolute sums, squares and counts
// beside the importance matrix's entry for it.
func (r calReader) readMoments(c *Calibration, names, tin []string) error {
	var err error
	for i, n := range names {
		e := c.Entries[n]
		if e == nil {
			return r.errorf("weight %s has no %s", n, sumSuffix)
		}
		mats := len(e.Counts)
		mo := &Moments{Name: n, Input: tin[i], Mats: mats, Width: len(e.Sums) / mats, Sq32: e.Sums}
		el := uint64(len(e.Sums))
		if mo.Sum, err = r.f64(n+SumSuffix, el); err != nil {
			return err
		}
		if mo.Abs, err = r.f64(n+AbsSuffix, el); err != nil {
			return err
		}
		if mo.Sq, err = r.f64(n+SqSuffix, el); err != nil {
			return err
		}
		if mo.Count, err = r.f64(n+NSuffix, uint64(mats)); err != nil {
			return err
		}
		c.Tensors[n] = mo
	}
	return nil
}

// readInputs reads each input, named by the weight whose moments it shares,
// with its Gram when the file has them.
func (r calReader) readInputs(c *Calibration, inputs, nodes []string) error {
	var err error
	for i, n := range inputs {
		in := &Input{Name: n, Node: nodes[i]}
		mo := c.Tensors[n]
		if mo == nil {
			return r.errorf("input %s is not one of %s", n, KeyTensors)
		}
		in.Width, in.Mats, in.Count = mo.Width, mo.Mats, mo.Count
		if c.Info.Gram {
			if in.gram, err = r.f64Info(n+GramSuffix, uint64(PackedLen(in.Width))*uint64(in.Mats)); err != nil {
				return err
			}
			in.file, c.file = r.f, r.f
			if in.Count, err = r.f64(n+GramNSuffix, uint64(in.Mats)); err != nil {
				return err
			}
		}
		c.Inputs = append(c.Inputs, in)
	}
	return nil
}
