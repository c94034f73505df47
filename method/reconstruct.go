package method

import (
	"context"
	"fmt"

	"github.com/physarium/physarium-gguf/obs"
)

// Reconstructing returns m with survivor reconstruction: each band's mask
// is m's own (its Decide), fixed first; then obs.Prune with that mask
// (and the original's zeros, which stay 0) gives the survivors the OBS
// update that preserves the layer's output on the calibration inputs.
// The name, labels, count rule and kills are m's; the run needs a
// calibration file with Gram matrices, as SparseGPT does. A method that
// already reconstructs is returned as it is.
func Reconstructing(m Method) Method {
	if c, ok := m.(Calibrated); ok && c.NeedsCalibration() {
		return m
	}
	return reconstructing{m}
}

// reconstructing is a Method whose deciders also rewrite the survivors.
type reconstructing struct{ Method }

func (reconstructing) NeedsCalibration() bool { return true }
func (reconstructing) Replay(bool) Replay     { return ReplayNone }

func (r reconstructing) NotReplayed(bool, string) string {
	return "the survivors moved (reconstruction), and replaying them needs the calibration file's Gram matrices, which the audit is not given"
}

// reconState is a reconstructing method's state of one tensor: the
// wrapped method's own, and the factors of its input.
type reconState struct {
	inner any
	cal   *calState
}

func (r reconstructing) Prepare(ctx context.Context, t Tensor, cfg Config) (any, error) {
	st := &reconState{}
	if p, ok := r.Method.(Preparer); ok {
		var err error
		if st.inner, err = p.Prepare(ctx, t, cfg); err != nil {
			return nil, err
		}
	}
	var err error
	st.cal, err = cfg.Calibration.prepareFactors(t)
	return st, err
}

func (r reconstructing) NewDecider(cfg Config) (Decider, error) {
	d, err := r.Method.NewDecider(cfg)
	if err != nil {
		return nil, err
	}
	return &reconDecider{inner: d, obsDecider: obsDecider{cfg: cfg}}, nil
}

// reconDecider decides with the wrapped method's decider and
// reconstructs with obs.
type reconDecider struct {
	inner Decider
	obsDecider
	fixed []bool
}

// Decide implements Decider: the wrapped decider's mask, then the
// reconstruction of the survivors under it.
func (d *reconDecider) Decide(b *Band, mask []byte) (Counts, error) {
	st, ok := b.State.(*reconState)
	if !ok {
		return Counts{}, fmt.Errorf("rows %d-%d: the reconstruction was not prepared", b.Row0, b.Row0+b.Rows-1)
	}
	inner := *b
	inner.State = st.inner
	c, err := d.inner.Decide(&inner, mask)
	if err != nil {
		return c, err
	}
	f, err := d.cfg.Calibration.factor(st.cal, b)
	if err != nil {
		return c, err
	}
	defer st.cal.release(b)
	n := b.Rows * b.Cols
	d.w = grow(d.w, n)
	d.fixed = grow(d.fixed, n)
	for i, v := range b.Values[:n] {
		d.w[i] = float64(v)
		d.fixed[i] = mask[i] != 0 || v == 0
	}
	res, err := obs.Prune(d.w, b.Rows, f, obs.Options{Mask: d.fixed, BlockSize: blockSize(d.cfg), Workers: 1})
	if err != nil {
		return c, fmt.Errorf("tensor %s, rows %d-%d: %w", st.cal.name, b.Row0, b.Row0+b.Rows-1, err)
	}
	d.keep(b, res.Mask, mask)
	c.OutputError, c.OutputEnergy = d.outputError(b, st.cal)
	return c, nil
}
