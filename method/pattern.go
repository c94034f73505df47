package method

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/obs"
)

// Pattern is an N:M semi-structured pattern: in every group of M
// consecutive input weights of an output row exactly N die (the weights
// already zero counting first); a row whose length M does not divide
// ends with a group of r < M weights, of which obs.GroupQuota(N, M, r)
// die. The zero value is no pattern.
type Pattern struct{ N, M int }

// None reports whether p is no pattern.
func (p Pattern) None() bool { return p.M == 0 }

// String is the value of physarium.pattern and --pattern, e.g. "2:4".
func (p Pattern) String() string { return fmt.Sprintf("%d:%d", p.N, p.M) }

// MaxPatternM is the largest group a pattern may have.
const MaxPatternM = 256

// ParsePattern reads "N:M" with 0 < N < M <= MaxPatternM.
func ParsePattern(s string) (Pattern, error) {
	a, b, ok := strings.Cut(s, ":")
	n, err1 := strconv.Atoi(a)
	m, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || n <= 0 || n >= m || m > MaxPatternM {
		return Pattern{}, fmt.Errorf("pattern %q: want N:M with 0 < N < M <= %d, e.g. 2:4", s, MaxPatternM)
	}
	return Pattern{n, m}, nil
}

// Scorer is a Decider that can score every weight of a band (lower dies
// first) instead of choosing its kills itself; an N:M pattern ranks those
// scores within each group.
type Scorer interface {
	Score(b *Band, score []float32) error
}

// Patterned returns m deciding by cfg.Pattern: the kills are the N
// lowest-scoring weights (by m's own score, its Scorer) of every group of
// M. SparseGPT chooses its N:M groups itself (obs) and is returned as it
// is.
func Patterned(m Method) Method {
	if m.Name() == SparseGPT {
		return m
	}
	return patterned{m}
}

// patterned is a Method whose kills follow Config.Pattern.
type patterned struct{ Method }

func (p patterned) Validate(cfg Config) error {
	if cfg.Params.Mode != kernel.Sparsity {
		return fmt.Errorf("an N:M pattern needs sparsity mode (--mode sparsity)")
	}
	return p.Method.Validate(cfg)
}

func (patterned) Rule(cfg Config) Rule { return PatternRule{cfg.Pattern} }

func (p patterned) Prepare(ctx context.Context, t Tensor, cfg Config) (any, error) {
	if pr, ok := p.Method.(Preparer); ok {
		return pr.Prepare(ctx, t, cfg)
	}
	return nil, nil
}

func (p patterned) NewDecider(cfg Config) (Decider, error) {
	d, err := p.Method.NewDecider(cfg)
	if err != nil {
		return nil, err
	}
	sc, ok := d.(Scorer)
	if !ok {
		return nil, fmt.Errorf("method %s has no per-weight score to rank an N:M pattern by", p.Name())
	}
	return &patternDecider{sc: sc, p: cfg.Pattern}, nil
}

// patternDecider kills, in every group of M weights of a row, the N with
// the lowest score.
type patternDecider struct {
	sc    Scorer
	p     Pattern
	score []float32
	idx   []int32
}

// Decide implements Decider.
func (d *patternDecider) Decide(b *Band, mask []byte) (Counts, error) {
	c, err := startRanked(b, mask)
	if err != nil {
		return c, err
	}
	n := b.Rows * b.Cols
	d.score = grow(d.score, n)
	if err := d.sc.Score(b, d.score); err != nil {
		return c, err
	}
	for r := range b.Rows {
		for c0 := 0; c0 < b.Cols; c0 += d.p.M {
			lo, hi := r*b.Cols+c0, r*b.Cols+min(c0+d.p.M, b.Cols)
			_, d.idx = selectLowest(b.Values[lo:hi], d.score[lo:hi], mask[lo:hi], obs.GroupQuota(d.p.N, d.p.M, hi-lo), d.idx)
		}
	}
	return c, nil
}

// PatternRule: every group of M consecutive weights of a row ends with N
// zeros (a shorter last group obs.GroupQuota). Kills counts those zeros
// less the original's, exact when no group held more than its quota.
type PatternRule struct{ P Pattern }

// String implements Rule.
func (r PatternRule) String() string {
	return fmt.Sprintf("every group of %d consecutive weights of a row ends with %d zeros", r.P.M, r.P.N)
}

// Kills implements Rule.
func (r PatternRule) Kills(rows, cols int, _ float64, zeros func(r0, r1, c0, c1 int) int) uint64 {
	if r.P.M == 0 {
		return 0
	}
	return lose(rows*RowPatternZeros(r.P, cols), zeros(0, rows, 0, tileColumns(cols)))
}

// RowPatternZeros is the number of zeros pattern p leaves in a row of
// cols weights.
func RowPatternZeros(p Pattern, cols int) int {
	z := (cols / p.M) * p.N
	if r := cols % p.M; r > 0 {
		z += obs.GroupQuota(p.N, p.M, r)
	}
	return z
}

// Score implements Scorer: |w|*a_i.
func (d *rowDecider) Score(b *Band, score []float32) error {
	magnitudes(score, b.Values[:b.Rows*b.Cols], b.Act, b.Cols)
	return nil
}

// Score implements Scorer: |w|.
func (magnitudeDecider) Score(b *Band, score []float32) error {
	magnitudes(score, b.Values[:b.Rows*b.Cols], nil, b.Cols)
	return nil
}

// Score implements Scorer: the kernel's final conductivity D_T of every
// weight (the mould's own ranking in sparsity mode).
func (d kernelDecider) Score(b *Band, score []float32) error {
	tr := d.tileRunner
	n := b.Rows * b.Cols
	tr.mask = grow(tr.mask, n)
	tr.d = grow(tr.d, n)
	tr.tiles = tr.tiles[:0]
	off := 0
	for c0 := 0; c0 < b.Cols; c0 += errata.TileSize {
		w := min(errata.TileSize, b.Cols-c0)
		var act []float32
		if b.Act != nil {
			act = b.Act[c0:]
		}
		tr.tiles = append(tr.tiles, kernel.Tile{
			W: b.Values[c0:], Rows: b.Rows, Cols: w, Stride: b.Cols, Act: act,
			Mask: tr.mask[c0:n], MaskStride: b.Cols, D: tr.d[off : off+b.Rows*w],
		})
		off += b.Rows * w
	}
	if err := tr.k.Run(tr.tiles); err != nil {
		if err := finite(b); err != nil {
			return err
		}
		return fmt.Errorf("kernel on rows %d-%d: %w", b.Row0, b.Row0+b.Rows-1, err)
	}
	off = 0
	for c0 := 0; c0 < b.Cols; c0 += errata.TileSize {
		w := min(errata.TileSize, b.Cols-c0)
		for r := range b.Rows {
			copy(score[r*b.Cols+c0:r*b.Cols+c0+w], tr.d[off+r*w:off+(r+1)*w])
		}
		off += b.Rows * w
	}
	return nil
}

// Score implements Scorer: the rank's score (flow-share: F/rowsum(F)).
func (d *flowDecider) Score(b *Band, score []float32) error {
	if err := finite(b); err != nil {
		return err
	}
	if d.def.rank == RankFlowShare {
		shareBand(score, b)
		return nil
	}
	return fmt.Errorf("an N:M pattern ranks v2 by %s only", RankFlowShare)
}
