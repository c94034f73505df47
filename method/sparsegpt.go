package method

import (
	"context"
	"fmt"
	"math"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/obs"
)

// SparseGPT is the name of the one-shot pruner of Frantar & Alistarh
// 2023 (sparsity mode only; needs a calibration file with Gram matrices).
//
// Each target matrix's input Hessian H = 2 X^T X / tokens, damped by
// lambda = damp * mean(diag H), is factored once per input and per
// matrix (obs.NewFactor) and shared by the tensors that read that input.
// Columns are visited in blocks of BlockSize (128); in each block the
// weights with the smallest w^2 / [U]_jj^2 die and the survivors to
// their right take the OBS update (obs.Prune, float64, lazy batches).
//
// The mask is chosen per band of 256 rows (prune's unit of work): in
// each 256-row x 128-column block the quota of the band is spread over
// all its rows, as SparseGPT spreads it over all rows of the matrix.
// Rows are independent given the mask, so per band only changes which
// rows share a block's quota; it keeps one band and one factor per
// worker in memory, flat in the model's size, where a whole-matrix mask
// would hold a whole (possibly 100k-row) matrix in float64.
const SparseGPT = "sparsegpt"

func init() { register(sparseGPT{}) }

// sparseGPT is SparseGPT through package obs.
type sparseGPT struct{}

func (sparseGPT) Name() string             { return SparseGPT }
func (sparseGPT) Version() int             { return 0 }
func (sparseGPT) ActivationAware() bool    { return true }
func (sparseGPT) NeedsImatrix() bool       { return false }
func (sparseGPT) NeedsCalibration() bool   { return true }
func (sparseGPT) Ranks(kernel.Mode) []Rank { return nil }
func (sparseGPT) Replay(bool) Replay       { return ReplayNone }
func (sparseGPT) Rule(cfg Config) Rule {
	if !cfg.Pattern.None() {
		return PatternRule{cfg.Pattern}
	}
	return sparsityOnly(cfg, BandBlockRule{})
}

func (sparseGPT) Validate(cfg Config) error {
	return needSparsity(SparseGPT, cfg)
}

func (sparseGPT) Importance(cfg Config) string {
	return "w^2/[U]_jj^2 per 256-row band and column block (or N:M group), U=chol(H^-1)^T, H=2X^TX/tokens+lambda*I, lambda=damp*mean(diag H) (damp and block in physarium.reconstruction); survivors take the OBS update"
}

func (sparseGPT) NotReplayed(bool, string) string {
	return "the mask and the survivors depend on the calibration file's Gram matrices, which the audit is not given"
}

func (sparseGPT) Prepare(_ context.Context, t Tensor, cfg Config) (any, error) {
	return cfg.Calibration.prepareFactors(t)
}

func (sparseGPT) NewDecider(cfg Config) (Decider, error) {
	return &obsDecider{cfg: cfg}, nil
}

// BlockSizeOf is the OBS column block cfg asks for.
func BlockSizeOf(cfg Config) int { return blockSize(cfg) }

// blockSize is the run's OBS column block.
func blockSize(cfg Config) int {
	if cfg.BlockSize > 0 {
		return cfg.BlockSize
	}
	return obs.DefaultBlockSize
}

// Reconstructor is a Decider that also rewrites the survivors: after
// Decide, Survivors writes the band's new values (Rows x Cols; the kills
// at 0) into dst and returns how many survivors changed value. prune
// re-encodes every block that holds a kill or a changed value.
type Reconstructor interface {
	Survivors(b *Band, mask []byte, dst []float32) (changed uint64, err error)
}

// Calibrated is a Method that reads a calibration file (Config.Calibration).
type Calibrated interface {
	NeedsCalibration() bool
}

// obsDecider decides a band by obs.Prune and keeps the new values for
// Survivors.
type obsDecider struct {
	cfg   Config
	w     []float64
	zeros []bool // the band's original zeros, which stay 0
	after []float32
	orig  []float64 // scratch of outputError
	zero  []float64 // scratch of outputError
}

// Decide implements Decider: SparseGPT's mask of the band, the kills
// being the masked weights that were not already zero.
func (d *obsDecider) Decide(b *Band, mask []byte) (Counts, error) {
	c, err := startRanked(b, mask)
	if err != nil {
		return c, err
	}
	st, ok := b.State.(*calState)
	if !ok {
		return c, fmt.Errorf("rows %d-%d: the %s method was not prepared", b.Row0, b.Row0+b.Rows-1, SparseGPT)
	}
	f, err := d.cfg.Calibration.factor(st, b)
	if err != nil {
		return c, err
	}
	defer st.release(b)
	n := b.Rows * b.Cols
	d.w = grow(d.w, n)
	for i, v := range b.Values[:n] {
		d.w[i] = float64(v)
	}
	d.zeros = grow(d.zeros, n)
	for i, v := range b.Values[:n] {
		d.zeros[i] = v == 0
	}
	opt := obs.Options{Sparsity: d.cfg.Params.Sparsity, Zeros: d.zeros, BlockSize: blockSize(d.cfg), Workers: 1}
	opt.N, opt.M = d.cfg.Pattern.N, d.cfg.Pattern.M
	res, err := obs.Prune(d.w, b.Rows, f, opt)
	if err != nil {
		return c, fmt.Errorf("tensor %s, rows %d-%d: %w", st.name, b.Row0, b.Row0+b.Rows-1, err)
	}
	d.keep(b, res.Mask, mask)
	c.OutputError, c.OutputEnergy = d.outputError(b, st)
	return c, nil
}

// outputError is the change of the band's layer output on the
// calibration inputs by its new values, and the dense output's energy.
func (d *obsDecider) outputError(b *Band, st *calState) (float64, float64) {
	n := b.Rows * b.Cols
	g := st.gram(b)
	orig := grow(d.orig, n)
	d.orig = orig
	for i, v := range b.Values[:n] {
		orig[i] = float64(v)
	}
	after := grow(d.zero, n)
	d.zero = after
	for i, v := range d.after[:n] {
		after[i] = float64(v)
	}
	e := obs.OutputError(orig, after, b.Rows, g, b.Cols)
	clear(after)
	return e, obs.OutputError(orig, after, b.Rows, g, b.Cols)
}

// keep marks the kills (masked and not already zero) and stores the new
// values as float32.
func (d *obsDecider) keep(b *Band, removed []bool, mask []byte) {
	n := b.Rows * b.Cols
	d.after = grow(d.after, n)
	for i, v := range d.w[:n] {
		if removed[i] {
			d.after[i] = 0
			if b.Values[i] != 0 {
				mask[i] = 1
			}
			continue
		}
		d.after[i] = float32(v)
	}
}

// Survivors implements Reconstructor.
func (d *obsDecider) Survivors(b *Band, mask []byte, dst []float32) (uint64, error) {
	n := b.Rows * b.Cols
	if len(d.after) < n {
		return 0, fmt.Errorf("rows %d-%d: survivors asked before the band was decided", b.Row0, b.Row0+b.Rows-1)
	}
	copy(dst[:n], d.after[:n])
	var changed uint64
	for i, v := range dst[:n] {
		if mask[i] == 0 && math.Float32bits(v) != math.Float32bits(b.Values[i]) {
			changed++
		}
	}
	return changed, nil
}

// BandBlockRule: the 256-row band of r rows and n columns ends with
// round(s*r*n) zeros: SparseGPT's quota per column block, summed over the
// band's blocks, the original's zeros (which stay 0) counting first. It
// is exact when no block holds more zeros than its quota.
type BandBlockRule struct{}

// String implements Rule.
func (BandBlockRule) String() string {
	return "the 256-row band of r rows and n columns ends with round(s*r*n) zeros"
}

// Kills implements Rule.
func (BandBlockRule) Kills(rows, cols int, s float64, zeros func(r0, r1, c0, c1 int) int) uint64 {
	var k uint64
	for r0, nr := range errata.Bands(rows) {
		k += lose(int(math.Round(s*float64(nr)*float64(cols))), zeros(r0, r0+nr, 0, tileColumns(cols)))
	}
	return k
}
