package method

import (
	"fmt"
	"math"
	"strings"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/kernel"
)

// ActivationFlow is the name of Physarium v2: the mould eats F = |w| * a_i
// with a_i = sqrt(in_sum2_i / count) from a llama.cpp importance matrix.
const ActivationFlow = "activation-flow"

func init() { register(activationFlow{}) }

// Rank is how activation-flow chooses its kills in sparsity mode. Natural
// mode always kills where the mould fed |w|*a_i starves
// (D_T < theta*mean(D_T)).
type Rank string

const (
	// RankFlowShare is the best rank measured: the share of its output
	// node's flow that a tube carries when every tube carries its food,
	//   share_oi = F_oi / sum_j F_oj,  F = |w|*a_i,
	// with sum_j over the whole output row (0 when the row's food is all
	// zero). Per 256-row band of each matrix (each matrix of an MoE tensor
	// on its own), the errata.BandQuota weights with the smallest share
	// die (already-zero ones counting first; ties: lowest row-major
	// index), so every matrix ends with exactly round(s*rows*n) zeros
	// while the band's rows share the kills unevenly: a row whose food is
	// spread thin loses fewer tubes than one fed through a few thick ones.
	// Measured on stories260K (TestV2Table) it beats Wanda at 30, 40 and
	// 50 %; the mould's D_T added nothing to it, so this rank runs no
	// kernel.
	RankFlowShare Rank = "flow-share"
	// RankRowFlow: per output row o of the tensor (each matrix of an MoE
	// tensor on its own), kill the round(s*n_row) weights (already-zero
	// ones counting first) with the smallest
	//   F_oi * (1/sum_j F_oj + 1/sum_r F_ri),  F = |w|*a_i,
	// where sum_j runs over the whole row and sum_r over the rows of the
	// weight's 256-row band (its tile's rows): the share of the food-
	// proportional flow that leaves input node i and enters output node o
	// through the tube, ties broken by column.
	RankRowFlow Rank = "row-flow"
	// RankRowFlowMould multiplies the RankRowFlow score by MouldPenalty
	// where the mould fed F (natural mode, default constants) starves the
	// tube.
	RankRowFlowMould Rank = "row-flow-mould"
	// RankRowMould: per output row (quota errata.RowQuota), kill the
	// weights with the smallest F * (MouldPenalty where the mould fed F
	// starves the tube in natural mode, else 1), F = |w|*a_i. Measured on
	// stories260K (TestV2Table) it was within noise of Wanda and lost at
	// 50 %.
	RankRowMould Rank = "row-mould"
	// RankTile is the kernel's own sparsity mode with food F: per 256x256
	// tile, the round(s*n) smallest D_T die.
	RankTile Rank = "tile"
)

// MouldPenalty is the factor the mould-informed ranks apply to the score of
// a tube the mould starves.
const MouldPenalty = 0.5

// rankDef is what a rank does.
type rankDef struct {
	rank    Rank
	formula string // physarium.importance
	rule    Rule
	mould   bool // scores the mould's natural-mode mask
	flow    bool // RankRowFlow's flow score (else F)
}

const (
	stability = "; stability not computed"
	flowScore = "F*(1/rowsum(F)+1/colsum_band(F)), F=|w|*" + activation + ", rowsum over the output row, colsum over the 256-row band"
)

// rankDefs are the sparsity-mode ranks, the default first.
var rankDefs = []rankDef{
	{RankFlowShare, "F/rowsum(F), F=|w|*" + activation + ", rowsum over the output row; ranked within each 256-row band of each matrix, the band's quota the sum of its rows' quotas" + stability, BandRule{}, false, false},
	{RankRowFlow, flowScore + "; ranked within each output row" + stability, RowRule{}, false, true},
	{RankRowFlowMould, flowScore + fmt.Sprintf(", times %g where the mould fed F starves the tube (natural kill rule)", MouldPenalty) + "; ranked within each output row" + stability, RowRule{}, true, true},
	{RankRowMould, "F=|w|*" + activation + fmt.Sprintf(", times %g where the mould fed F starves the tube (natural kill rule); ranked within each output row", MouldPenalty) + stability, RowRule{}, true, false},
	{RankTile, "D_T of the mould fed |w|*" + activation + ", ranked within each 256x256 tile" + stability, TileRule{}, false, false},
}

// Ranks lists every sparsity-mode rank of activation-flow, the default
// first.
func Ranks() []Rank {
	rs := make([]Rank, len(rankDefs))
	for i, d := range rankDefs {
		rs[i] = d.rank
	}
	return rs
}

// DefaultRank is the sparsity-mode rank used when none is given: the best
// measured (TestV2Table).
const DefaultRank = RankFlowShare

// ParseRank parses a rank name; "" means DefaultRank.
func ParseRank(s string) (Rank, error) {
	if s == "" {
		return DefaultRank, nil
	}
	if _, ok := rankOf(Rank(s)); ok {
		return Rank(s), nil
	}
	names := make([]string, len(rankDefs))
	for i, d := range rankDefs {
		names[i] = string(d.rank)
	}
	return "", fmt.Errorf("unknown v2 rank %q (want %s)", s, orList(names))
}

// rankOf returns the definition of a rank; "" is DefaultRank.
func rankOf(r Rank) (rankDef, bool) {
	if r == "" {
		r = DefaultRank
	}
	for _, d := range rankDefs {
		if d.rank == r {
			return d, true
		}
	}
	return rankDef{}, false
}

// activationFlow is Physarium v2.
type activationFlow struct{}

func (activationFlow) Name() string          { return ActivationFlow }
func (activationFlow) Version() int          { return 2 }
func (activationFlow) ActivationAware() bool { return true }
func (activationFlow) NeedsImatrix() bool    { return true }
func (activationFlow) Replay(bool) Replay    { return ReplayNone }

func (activationFlow) Ranks(mode kernel.Mode) []Rank {
	if mode != kernel.Sparsity {
		return nil
	}
	return Ranks()
}

func (activationFlow) Validate(cfg Config) error {
	if _, ok := rankOf(cfg.Rank); !ok {
		_, err := ParseRank(string(cfg.Rank))
		return err
	}
	if !cfg.Factors.None() && (cfg.Calibration == nil || cfg.Calibration.File == nil) {
		return fmt.Errorf("the full v2 food (--factors) reads a calibration file (--calibration)")
	}
	return nil
}

func (activationFlow) Importance(cfg Config) string {
	f := "|w|*" + activation + stability
	if cfg.Params.Mode == kernel.Sparsity {
		d, _ := rankOf(cfg.Rank)
		f = d.formula
	}
	if cfg.Factors.None() {
		return f
	}
	f = strings.TrimSuffix(f, stability)
	f = strings.ReplaceAll(f, "F=|w|*"+activation, "F")
	f = strings.ReplaceAll(f, "|w|*"+activation, "F")
	return f + "; " + cfg.Factors.foodFormula(calibrationDamp(cfg))
}

// ReadsCalibration reports that activation-flow reads a calibration file
// when given one: without --imatrix it eats the full food from it.
func (activationFlow) ReadsCalibration() bool { return true }

func (activationFlow) Rule(cfg Config) Rule {
	if cfg.Params.Mode != kernel.Sparsity {
		return nil
	}
	d, _ := rankOf(cfg.Rank)
	return d.rule
}

func (activationFlow) NotReplayed(bool, string) string {
	return "the mould ate |w|*a_i with a_i from an importance matrix (imatrix) that the audit is not given, and prune exposes no function to recompute its mask; the kill counts of sparsity mode are checked against the rule instead"
}

// NewDecider returns the kernel's own decider in natural mode and for
// RankTile, else a decider of the rank's score (with a natural-mode
// kernel for the mould-informed ranks); with the full food
// (Config.Factors) each band is first given its phi as Act.
func (a activationFlow) NewDecider(cfg Config) (Decider, error) {
	d, err := a.newDecider(cfg)
	if err != nil || cfg.Factors.None() {
		return d, err
	}
	return foodDecider{d}, nil
}

// newDecider is NewDecider on the band's own Act.
func (activationFlow) newDecider(cfg Config) (Decider, error) {
	d, _ := rankOf(cfg.Rank)
	if cfg.Params.Mode != kernel.Sparsity || d.rank == RankTile {
		return newKernelDecider(cfg)
	}
	fd := &flowDecider{def: d, sparsity: cfg.Params.Sparsity}
	if d.mould {
		natural := cfg.Params
		natural.Mode, natural.Sparsity = kernel.Natural, 0
		var err error
		if fd.mould, err = newTileRunner(cfg.Impl, natural); err != nil {
			return nil, err
		}
	}
	return fd, nil
}

// flowDecider decides a band by one of the row or band ranks.
type flowDecider struct {
	def       rankDef
	sparsity  float64
	mould     *tileRunner // the natural-mode kernel of the mould-informed ranks
	score     []float32
	mouldMask []byte
	colSum    []float64
	idx       []int32
}

// Decide implements Decider.
func (d *flowDecider) Decide(b *Band, mask []byte) (Counts, error) {
	c, err := startRanked(b, mask)
	if err != nil {
		return c, err
	}
	n := b.Rows * b.Cols
	d.score = grow(d.score, n)
	if d.def.rank == RankFlowShare {
		shareBand(d.score, b)
		_, d.idx = selectLowest(b.Values[:n], d.score, mask[:n], errata.BandQuota(b.MatrixRow0, b.Rows, b.Cols, d.sparsity), grow(d.idx, n))
		return c, nil
	}
	var mould []byte
	if d.mould != nil {
		d.mouldMask = grow(d.mouldMask, n)
		if _, err := d.mould.run(b, d.mouldMask); err != nil {
			return c, err
		}
		mould = d.mouldMask
	}
	magnitudes(d.score, b.Values[:n], b.Act, b.Cols)
	if d.def.flow {
		d.colSum = grow(d.colSum, b.Cols)
		flowScores(d.score, b.Rows, b.Cols, d.colSum)
	}
	for x, m := range mould {
		if m != 0 {
			d.score[x] *= MouldPenalty
		}
	}
	d.idx = selectRows(b, d.score, mask, d.sparsity, grow(d.idx, b.Cols))
	return c, nil
}

// shareBand fills score (Rows x Cols) with the RankFlowShare score
// F_oi / sum_j F_oj, F = |w|*a (a = 1 where Act is nil), the row sum in
// float64; a row whose food is all zero scores 0.
func shareBand(score []float32, b *Band) {
	for r := range b.Rows {
		srow := score[r*b.Cols : (r+1)*b.Cols]
		var rs float64
		for i, v := range b.Values[r*b.Cols : (r+1)*b.Cols] {
			f := float32(math.Abs(float64(v)))
			if b.Act != nil {
				f *= b.Act[i]
			}
			srow[i] = f
			rs += float64(f)
		}
		if rs == 0 {
			continue
		}
		for i, f := range srow {
			srow[i] = float32(float64(f) / rs)
		}
	}
}

// flowScores turns the food F in score (rows x cols) into the RankRowFlow
// score F/rowsum(F) + F/colsum_band(F), sums in float64; colSum is scratch
// of len cols.
func flowScores(score []float32, rows, cols int, colSum []float64) {
	clear(colSum)
	for r := range rows {
		for i, f := range score[r*cols : (r+1)*cols] {
			colSum[i] += float64(f)
		}
	}
	for r := range rows {
		srow := score[r*cols : (r+1)*cols]
		var rs float64
		for _, f := range srow {
			rs += float64(f)
		}
		for i, f := range srow {
			if f == 0 {
				continue
			}
			srow[i] = float32(float64(f)/rs + float64(f)/colSum[i])
		}
	}
}
