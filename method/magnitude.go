package method

import (
	"context"
	"fmt"
	"math"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/kernel"
)

// Magnitude is the name of the plain baseline without the kernel: the
// weights with the smallest |w| of each matrix die (sparsity mode only).
const Magnitude = "magnitude"

func init() { register(magnitude{}) }

// magnitude kills, per matrix, the round(s*n) weights with the smallest
// |w| (zeros counting first, ties by index): a Preparer that finds each
// matrix's exact threshold before its bands are decided.
type magnitude struct{}

func (magnitude) Name() string              { return Magnitude }
func (magnitude) Version() int              { return 0 }
func (magnitude) ActivationAware() bool     { return false }
func (magnitude) NeedsImatrix() bool        { return false }
func (magnitude) Ranks(kernel.Mode) []Rank  { return nil }
func (magnitude) Validate(cfg Config) error { return needSparsity(Magnitude, cfg) }
func (magnitude) Rule(cfg Config) Rule      { return sparsityOnly(cfg, MatrixRule{}) }

func (magnitude) Importance(Config) string {
	return "|w| ranked within each tensor (each matrix of a 3-D tensor on its own)"
}

func (magnitude) Replay(control bool) Replay {
	if control {
		return ReplayNone
	}
	return ReplayMagnitude
}

func (magnitude) NotReplayed(control bool, importance string) string {
	if control {
		return "the magnitude replay is not implemented for control twins"
	}
	return fmt.Sprintf("importance %q or mode", importance) + " is not what prune writes for the magnitude baseline"
}

func (magnitude) NewDecider(Config) (Decider, error) { return magnitudeDecider{}, nil }

// magThreshold is the cut of one matrix: every weight whose key (the bits
// of |w|) is below pivot dies, and of the weights whose key equals pivot
// the first need, in index order, die. tiesBefore[b] counts the weights
// equal to pivot in the matrix's bands before band b.
type magThreshold struct {
	pivot      uint32
	need       uint64
	tiesBefore []uint64
}

// magKey is the ordering key of a weight: the bits of |w|, so that keys
// compare like magnitudes (zero first).
func magKey(v float32) uint32 { return math.Float32bits(v) &^ (1 << 31) }

// Prepare finds, for each matrix of the tensor, the exact threshold at
// sparsity s: the k = round(s*n)-th smallest |w| of the matrix (n = its
// weights, zeros included and ranked first), ties broken by index. It
// needs no more memory than one band and 65536 counters: three decode
// passes over the matrix, a histogram of the high 16 bits of the keys, a
// histogram of the low 16 bits inside the chosen bucket, then the count of
// weights equal to the threshold in each band. It returns a
// []magThreshold, one per matrix.
func (magnitude) Prepare(ctx context.Context, t Tensor, cfg Config) (any, error) {
	cuts := make([]magThreshold, t.Matrices)
	var vals []float32
	perMat := errata.BandsPerMatrix(t.Rows)
	for m := range cuts {
		// pass calls fn with the values of each band of matrix m.
		pass := func(fn func(band int, v []float32)) error {
			for b := m * perMat; b < (m+1)*perMat; b++ {
				if err := ctx.Err(); err != nil {
					return err
				}
				var err error
				if vals, err = t.ReadBand(b, vals); err != nil {
					return err
				}
				fn(b-m*perMat, vals)
			}
			return nil
		}
		k := uint64(math.Round(cfg.Params.Sparsity * float64(uint64(t.Rows)*uint64(t.Cols))))
		if err := cuts[m].find(k, perMat, pass); err != nil {
			return nil, err
		}
	}
	return cuts, nil
}

// find sets the threshold of the k smallest keys of a matrix of perMat
// bands that pass reads.
func (c *magThreshold) find(k uint64, perMat int, pass func(func(band int, v []float32)) error) error {
	c.tiesBefore = make([]uint64, perMat+1)
	if k == 0 {
		return nil // nothing below key 0, no tie dies
	}
	var hist [1 << 16]uint64
	if err := pass(func(_ int, v []float32) {
		for _, x := range v {
			hist[magKey(x)>>16]++
		}
	}); err != nil {
		return err
	}
	need := k
	hi := 0
	for ; hi < len(hist)-1 && need > hist[hi]; hi++ {
		need -= hist[hi]
	}
	clear(hist[:])
	if err := pass(func(_ int, v []float32) {
		for _, x := range v {
			if key := magKey(x); int(key>>16) == hi {
				hist[key&0xffff]++
			}
		}
	}); err != nil {
		return err
	}
	lo := 0
	for ; lo < len(hist)-1 && need > hist[lo]; lo++ {
		need -= hist[lo]
	}
	c.pivot, c.need = uint32(hi)<<16|uint32(lo), need
	return pass(func(b int, v []float32) {
		var n uint64
		for _, x := range v {
			if magKey(x) == c.pivot {
				n++
			}
		}
		c.tiesBefore[b+1] = c.tiesBefore[b] + n
	})
}

// magnitudeDecider applies the thresholds Prepare found.
type magnitudeDecider struct{}

// Decide implements Decider: it marks the band's weights below its
// matrix's threshold.
func (magnitudeDecider) Decide(b *Band, mask []byte) (Counts, error) {
	c, err := startRanked(b, mask)
	if err != nil {
		return c, err
	}
	cuts := b.State.([]magThreshold)
	perMat := len(cuts[0].tiesBefore) - 1
	t := &cuts[b.Index/perMat]
	ties := t.tiesBefore[b.Index%perMat]
	for i, v := range b.Values[:b.Rows*b.Cols] {
		if v == 0 {
			continue
		}
		switch key := magKey(v); {
		case key < t.pivot:
			mask[i] = 1
		case key == t.pivot:
			if ties < t.need {
				mask[i] = 1
			}
			ties++
		}
	}
	return c, nil
}
