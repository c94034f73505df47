package method

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/obs"
)

// WithReconstruction returns m with survivor reconstruction for a run of
// cfg: for activation-flow eating the full food in sparsity mode, the
// adaptive v2 full (its mask chosen block by block on the weights as the
// OBS update has left them), for every other method Reconstructing(m)
// (its mask fixed first).
func WithReconstruction(m Method, cfg Config) Method {
	if m.Name() == ActivationFlow && !cfg.Factors.None() && cfg.Params.Mode == kernel.Sparsity {
		return adaptiveFlow{m}
	}
	return Reconstructing(m)
}

// adaptiveFlow is v2 full with --reconstruct. The columns of each 256-row
// band are visited in OBS column blocks (Config.BlockSize, 128), left to
// right as SparseGPT visits them; when a block is reached, its kills are
// chosen on the weights as the updates of the blocks before it have left
// them, by the full food F_oj = |w_oj|*phi_j:
//
//   - unstructured: the block's quota round(s*r*c1) - round(s*r*c0) (r the
//     band's rows, [c0, c1) the block's columns; the original's zeros
//     counting first) goes to the weights with the smallest flow share
//     F_oj / sum_j' F_oj' (the sum over the whole current row), ties by
//     row-major index;
//   - N:M: each group of M columns is chosen when the sweep reaches it
//     (as SparseGPT chooses its groups), after the updates of every
//     column to its left: in each row, the N smallest F_oj.
//
// Then the block's (or group's) kills are removed and the survivors to
// their right take the OBS update (obs.Prune with the kills so far as its
// mask). With
// sequential OBS this is the same reconstruction as a single pass under
// the final mask; only the choice adapts to the updated weights.
type adaptiveFlow struct{ Method }

func (adaptiveFlow) NeedsCalibration() bool { return true }
func (adaptiveFlow) Replay(bool) Replay     { return ReplayNone }

func (adaptiveFlow) NotReplayed(bool, string) string {
	return "the mask was chosen on the weights as the OBS update left them and the survivors moved (reconstruction); replaying them needs the calibration file's Gram matrices, which the audit is not given"
}

func (adaptiveFlow) Rule(cfg Config) Rule {
	if !cfg.Pattern.None() {
		return PatternRule{cfg.Pattern}
	}
	return BandBlockRule{}
}

func (a adaptiveFlow) Validate(cfg Config) error {
	if p := cfg.Pattern; !p.None() && blockSize(cfg)%p.M != 0 {
		return fmt.Errorf("pattern %s: its group of %d must divide the OBS column block %d", p, p.M, blockSize(cfg))
	}
	return a.Method.Validate(cfg)
}

func (adaptiveFlow) Importance(cfg Config) string {
	choice := "the flow share F/rowsum(F) (rowsum over the whole current row) per 256-row band and OBS column block, the block's quota round(s*r*c1)-round(s*r*c0)"
	if !cfg.Pattern.None() {
		choice = "the N smallest F of every group of M of a row, each group chosen when the OBS sweep reaches it"
	}
	return "adaptive v2 full: " + choice + ", chosen when the block is reached on the weights as the OBS update has left them; survivors take the OBS update; " + cfg.Factors.foodFormula(calibrationDamp(cfg))
}

// adaptiveState is the Prepare state of a tensor: its full food, and
// the factors of its input for the reconstruction.
type adaptiveState struct {
	food *fullFoodState
	cal  *calState
}

func (a adaptiveFlow) Prepare(ctx context.Context, t Tensor, cfg Config) (any, error) {
	st, err := activationFlow{}.Prepare(ctx, t, cfg)
	if err != nil {
		return nil, err
	}
	food, ok := st.(*fullFoodState)
	if !ok {
		return nil, fmt.Errorf("tensor %s: adaptive v2 full needs the full food", t.Name)
	}
	cal, err := cfg.Calibration.prepareFactors(t)
	if err != nil {
		return nil, err
	}
	return &adaptiveState{food: food, cal: cal}, nil
}

func (adaptiveFlow) NewDecider(cfg Config) (Decider, error) {
	return &adaptiveDecider{obsDecider: obsDecider{cfg: cfg}}, nil
}

// adaptiveDecider decides a band block by block and reconstructs it.
type adaptiveDecider struct {
	obsDecider
	fixed  []bool // the kills so far and the original's zeros
	rowSum []float64
	cands  []scored
}

// scored is one candidate weight of a block.
type scored struct {
	score float64
	at    int
}

// Decide implements Decider.
func (d *adaptiveDecider) Decide(b *Band, mask []byte) (Counts, error) {
	c, err := startRanked(b, mask)
	if err != nil {
		return c, err
	}
	st, ok := b.State.(*adaptiveState)
	if !ok {
		return c, fmt.Errorf("rows %d-%d: adaptive v2 full was not prepared", b.Row0, b.Row0+b.Rows-1)
	}
	phi, err := st.food.food.food(b, st.food.matrixRows)
	if err != nil {
		return c, err
	}
	f, err := d.cfg.Calibration.factor(st.cal, b)
	if err != nil {
		return c, err
	}
	defer st.cal.release(b)
	n := b.Rows * b.Cols
	d.w, d.fixed, d.zeros = grow(d.w, n), grow(d.fixed, n), grow(d.zeros, n)
	for i, v := range b.Values[:n] {
		d.w[i] = float64(v)
		d.fixed[i] = v == 0
		d.zeros[i] = v == 0
	}
	bs := blockSize(d.cfg)
	step := bs
	if !d.cfg.Pattern.None() {
		step = d.cfg.Pattern.M
	}
	for c0 := 0; c0 < b.Cols; c0 += step {
		c1 := min(c0+step, b.Cols)
		if d.cfg.Pattern.None() {
			d.chooseBlock(b.Rows, b.Cols, c0, c1, phi)
		} else {
			d.chooseGroups(b.Rows, b.Cols, c0, c1, phi)
		}
		if _, err := obs.Prune(d.w, b.Rows, f, obs.Options{Mask: d.fixed, BlockSize: bs, Workers: 1}); err != nil {
			return c, fmt.Errorf("tensor %s, rows %d-%d: %w", st.cal.name, b.Row0, b.Row0+b.Rows-1, err)
		}
	}
	d.keep(b, d.fixed, mask)
	c.OutputError, c.OutputEnergy = d.outputError(b, st.cal)
	return c, nil
}

// food is F = |w|*phi of weight i as it stands.
func (d *adaptiveDecider) food(i, cols int, phi []float32) float64 {
	return math.Abs(d.w[i]) * float64(phi[i%cols])
}

// chooseBlock fixes the block's quota of kills by the flow share.
func (d *adaptiveDecider) chooseBlock(rows, cols, c0, c1 int, phi []float32) {
	s := d.cfg.Params.Sparsity
	quota := int(math.Round(s*float64(rows)*float64(c1))) - int(math.Round(s*float64(rows)*float64(c0)))
	d.rowSum = grow(d.rowSum, rows)
	d.cands = d.cands[:0]
	for r := range rows {
		var sum float64
		for j := range cols {
			sum += d.food(r*cols+j, cols, phi)
		}
		d.rowSum[r] = sum
		for j := c0; j < c1; j++ {
			i := r*cols + j
			if d.zeros[i] {
				quota--
				continue
			}
			share := 0.0
			if sum > 0 {
				share = d.food(i, cols, phi) / sum
			}
			d.cands = append(d.cands, scored{share, i})
		}
	}
	d.fixLowest(quota)
}

// chooseGroups fixes the N smallest F of every group of M of the block.
func (d *adaptiveDecider) chooseGroups(rows, cols, c0, c1 int, phi []float32) {
	p := d.cfg.Pattern
	for r := range rows {
		for g := c0; g < c1; g += p.M {
			end := min(g+p.M, c1)
			quota := obs.GroupQuota(p.N, p.M, end-g)
			d.cands = d.cands[:0]
			for j := g; j < end; j++ {
				i := r*cols + j
				if d.zeros[i] {
					quota--
					continue
				}
				d.cands = append(d.cands, scored{d.food(i, cols, phi), i})
			}
			d.fixLowest(quota)
		}
	}
}

// fixLowest fixes the quota lowest-scoring candidates (ties by index).
func (d *adaptiveDecider) fixLowest(quota int) {
	if quota <= 0 {
		return
	}
	slices.SortFunc(d.cands, func(a, b scored) int {
		if c := cmp.Compare(a.score, b.score); c != 0 {
			return c
		}
		return cmp.Compare(a.at, b.at)
	})
	for _, c := range d.cands[:min(quota, len(d.cands))] {
		d.fixed[c.at] = true
	}
}
