package method

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/imatrix"
	"github.com/physarium/physarium-gguf/obs"
)

// DefaultDamp is SparseGPT's relative damping: lambda = 0.01 * mean(diag H).
const DefaultDamp = 0.01

// Calibration is a calibration file (a calibrate --gram file) as the
// methods that reconstruct survivors read it: the file, and the inverse
// Hessian factors of its inputs, built on first use and shared by every
// tensor that reads the same input (per matrix, so per expert).
//
// A factor is dropped once every band that needs it has been decided, so
// a run holds only the factors of the inputs its workers are on (one
// n x n float64 matrix each), not one per layer: memory stays flat in the
// model's depth.
type Calibration struct {
	// File is the loaded calibration file.
	File *imatrix.Calibration
	// Name is the file's base name, for messages and keys.
	Name string
	// SHA256 is the file's sha256, hex.
	SHA256 string
	// Damp is the relative damping asked for (obs.NewFactor's damp).
	Damp float64

	mu      sync.Mutex
	factors map[factorKey]*sharedFactor
	retries atomic.Int64 // factors that needed more damping than asked
	maxDamp atomic.Uint64
}

// NewCalibration wraps a loaded calibration file named name, with
// relative damping damp.
func NewCalibration(name string, f *imatrix.Calibration, damp float64) *Calibration {
	return &Calibration{File: f, Name: name, Damp: damp, factors: map[factorKey]*sharedFactor{}}
}

// Describe is the value of physarium.calibration: the file's name and
// sha256, its text's name and sha256, and its tokens.
func (c *Calibration) Describe() string {
	i := c.File.Info
	return fmt.Sprintf("%s sha256:%s text %s sha256:%s tokens %d", c.Name, c.SHA256, i.Text, i.TextSHA256, i.Tokens)
}

// Parameters is the value of physarium.reconstruction once the run is
// over: the damping asked for, the column block, and how many factors
// needed more damping (and the largest used).
func (c *Calibration) Parameters(blockSize int) string {
	n, d := c.Retried()
	s := fmt.Sprintf("damp=%g blocksize=%d", c.Damp, blockSize)
	if n > 0 {
		s += fmt.Sprintf(" damp_raised=%d max_damp=%g", n, d)
	}
	return s
}

// Retried returns how many factors needed more damping than asked (the
// Hessian was not positive definite), and the largest relative damping
// any factor used.
func (c *Calibration) Retried() (int, float64) {
	return int(c.retries.Load()), math.Float64frombits(c.maxDamp.Load())
}

// factorKey is one matrix of one input.
type factorKey struct {
	input string
	mat   int
}

// sharedFactor is the lazily built factor of one matrix of one input,
// with the number of bands still to use it. A factor dropped when its
// bands were done is built again if more bands register (a tensor
// prepared after the others that read its input were decided).
type sharedFactor struct {
	mu      sync.Mutex
	in      *imatrix.Input
	mat     int
	f       *obs.Factor
	gram    []float64 // the dense Gram, for the output error
	err     error
	pending int64
}

// calState is the Prepare state of a tensor whose bands read a
// calibration input: its factors, one per matrix.
type calState struct {
	name       string
	matrixRows int
	factors    []*sharedFactor
}

// prepareFactors finds the calibration input of tensor t and registers
// its bands with the shared factors of that input.
func (c *Calibration) prepareFactors(t Tensor) (*calState, error) {
	if c == nil || c.File == nil {
		return nil, fmt.Errorf("tensor %s: the method needs a calibration file (--calibration)", t.Name)
	}
	mo, ok := c.File.Tensors[t.Name]
	if !ok {
		return nil, fmt.Errorf("%s: no calibration entry for target tensor %s", c.Name, t.Name)
	}
	var in *imatrix.Input
	for _, x := range c.File.Inputs {
		if x.Name == mo.Input {
			in = x
			break
		}
	}
	switch {
	case in == nil:
		return nil, fmt.Errorf("%s: tensor %s reads input %s, which the file does not hold", c.Name, t.Name, mo.Input)
	case !in.HasGram():
		return nil, fmt.Errorf("%s: input %s (of tensor %s) has no Gram matrix: calibrate with --gram", c.Name, in.Name, t.Name)
	case in.Width != t.Cols || in.Mats != t.Matrices:
		return nil, fmt.Errorf("%s: input %s is %d wide x %d matrices, tensor %s %d x %d", c.Name, in.Name, in.Width, in.Mats, t.Name, t.Cols, t.Matrices)
	}
	st := &calState{name: t.Name, matrixRows: t.Rows, factors: make([]*sharedFactor, t.Matrices)}
	var bands int64
	for range errata.Bands(t.Rows) {
		bands++
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for m := range t.Matrices {
		k := factorKey{in.Name, m}
		sf := c.factors[k]
		if sf == nil {
			sf = &sharedFactor{in: in, mat: m}
			c.factors[k] = sf
		}
		sf.mu.Lock()
		sf.pending += bands
		sf.mu.Unlock()
		st.factors[m] = sf
	}
	return st, nil
}

// factor returns the factor of the band's matrix, building it on first
// use.
func (c *Calibration) factor(st *calState, b *Band) (*obs.Factor, error) {
	m := (b.Row0 - b.MatrixRow0) / st.matrixRows
	if m < 0 || m >= len(st.factors) {
		return nil, fmt.Errorf("tensor %s: band of rows %d-%d is outside its %d matrices", st.name, b.Row0, b.Row0+b.Rows-1, len(st.factors))
	}
	sf := st.factors[m]
	sf.mu.Lock()
	defer sf.mu.Unlock()
	if sf.f == nil && sf.err == nil {
		c.build(sf)
	}
	if sf.err != nil {
		return nil, fmt.Errorf("%s: input %s, matrix %d (tensor %s): %w", c.Name, sf.in.Name, sf.mat, st.name, sf.err)
	}
	return sf.f, nil
}

// build reads the Gram of sf's matrix and factors it (sf.mu held).
func (c *Calibration) build(sf *sharedFactor) {
	g, err := sf.in.Dense(sf.mat)
	if err != nil {
		sf.err = err
		return
	}
	f, err := obs.NewFactor(g, sf.in.Width, sf.in.Count[sf.mat], c.Damp)
	if err != nil {
		sf.err = err
		return
	}
	sf.f, sf.gram = f, g
	if f.Retries > 0 {
		c.retries.Add(1)
		for {
			old := c.maxDamp.Load()
			if f.Damp <= math.Float64frombits(old) || c.maxDamp.CompareAndSwap(old, math.Float64bits(f.Damp)) {
				break
			}
		}
	}
}

// gram returns the dense Gram of the band's matrix (after factor, before
// release).
func (st *calState) gram(b *Band) []float64 {
	sf := st.factors[(b.Row0-b.MatrixRow0)/st.matrixRows]
	sf.mu.Lock()
	defer sf.mu.Unlock()
	return sf.gram
}

// release tells the band's factor that one band less needs it; the last
// band drops it and collects it at once. Left to the collector's pacing,
// a dropped factor and its Gram (two n x n float64 matrices, 254 MB each
// for a 5632-wide input) can stay in the heap until the next wide input's
// are built on top of them, so the peak would hold two inputs' matrices.
// One collection per dropped factor costs about 1 % of the CPU time.
func (st *calState) release(b *Band) {
	m := (b.Row0 - b.MatrixRow0) / st.matrixRows
	if m < 0 || m >= len(st.factors) {
		return
	}
	sf := st.factors[m]
	sf.mu.Lock()
	sf.pending--
	dropped := sf.pending == 0
	if dropped {
		sf.f, sf.gram = nil, nil
	}
	sf.mu.Unlock()
	// Collected outside the lock: the collection takes a while, and
	// another worker may want the mutex meanwhile.
	if dropped {
		runtime.GC()
	}
}

// Close closes the calibration file (see imatrix.Calibration.Close).
func (c *Calibration) Close() error {
	if c == nil {
		return nil
	}
	return c.File.Close()
}
