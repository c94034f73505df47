package prune

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/physarium/physarium-gguf/imatrix"
	"github.com/physarium/physarium-gguf/kernel"
)

// Method is what decides which weights die.
type Method string

const (
	// MagnitudeFlow is Physarium v1: the mould eats F = |w|.
	MagnitudeFlow Method = "magnitude-flow"
	// ActivationFlow is Physarium v2: the mould eats F = |w| * a_i with
	// a_i = sqrt(in_sum2_i / count) from a llama.cpp importance matrix.
	ActivationFlow Method = "activation-flow"
	// Magnitude is the plain baseline without the kernel: the weights with
	// the smallest |w| of each tensor die (sparsity mode only).
	Magnitude Method = "magnitude"
	// Wanda is the plain baseline without the kernel (Sun et al. 2023): the
	// weights with the smallest |w| * a_i of each output row die (sparsity
	// mode only; needs an importance matrix).
	Wanda Method = "wanda"
)

// ParseMethod parses a method name; "" means MagnitudeFlow.
func ParseMethod(s string) (Method, error) {
	switch m := Method(s); m {
	case "":
		return MagnitudeFlow, nil
	case MagnitudeFlow, ActivationFlow, Magnitude, Wanda:
		return m, nil
	}
	return "", fmt.Errorf("prune: unknown method %q (want magnitude-flow, activation-flow, magnitude or wanda)", s)
}

// Version is the physarium.version of a method: 1 and 2 are the mould's
// versions, 0 marks a plain baseline that runs no Physarium kernel.
func (m Method) Version() int {
	switch m {
	case MagnitudeFlow:
		return 1
	case ActivationFlow:
		return 2
	}
	return 0
}

// NeedsImatrix reports whether the method reads an importance matrix.
func (m Method) NeedsImatrix() bool { return m == ActivationFlow || m == Wanda }

// activationAware is the method's physarium.activation_aware: whether it
// read activation statistics.
func (m Method) activationAware() bool { return m.NeedsImatrix() }

// Rank is how v2 (activation-flow) chooses its kills in sparsity mode.
// Natural mode always kills where the mould fed |w|*a_i starves
// (D_T < theta*mean(D_T)).
type Rank string

const (
	// RankRowFlow: per output row o of the tensor (each
	// matrix of an MoE tensor on its own), kill the round(s*n_row) weights
	// (already-zero ones counting first) with the smallest
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
	// RankRowMould: per output row (quota RowQuota), kill the weights with
	// the smallest F * (MouldPenalty where the mould fed F starves the tube
	// in natural mode, else 1), F = |w|*a_i. Measured on stories260K
	// (TestV2Table) it was within noise of Wanda and lost at 50 %.
	RankRowMould Rank = "row-mould"
	// RankFlowShare is the best rank measured: the share of its output node's flow
	// that a tube carries when every tube carries its food,
	//   share_oi = F_oi / sum_j F_oj,  F = |w|*a_i,
	// with sum_j over the whole output row (0 when the row's food is all
	// zero). Per 256-row band of each matrix (each matrix of an MoE tensor
	// on its own), the BandQuota weights with the smallest share die
	// (already-zero ones counting first; ties: lowest row-major index), where
	// BandQuota is the sum of the rows' RowQuota, so every matrix ends with
	// exactly round(s*rows*n) zeros while the band's rows share the kills
	// unevenly: a row whose food is spread thin loses fewer tubes than one
	// fed through a few thick ones. Unlike the row ranks, a row's share of
	// the kills is not fixed. Measured on stories260K (TestV2Table) it beats
	// Wanda at 30, 40 and 50 %; the mould's D_T added nothing to it (see
	// the commit log), so this rank runs no kernel.
	RankFlowShare Rank = "flow-share"
	// RankTile is the kernel's own sparsity mode with food F: per 256x256
	// tile, the round(s*n) smallest D_T die.
	RankTile Rank = "tile"
)

// MouldPenalty is the factor the mould-informed ranks apply to the score of
// a tube the mould starves.
const MouldPenalty = 0.5

// ImatrixMissingMark starts, in physarium.imatrix, the list of targets that
// had no importance-matrix entry and were pruned on v1 food
// (Options.ImatrixMissingV1).
const ImatrixMissingMark = " missing(v1 food |w|)="

// Ranks lists every v2 sparsity-mode rank.
var Ranks = []Rank{RankFlowShare, RankRowFlow, RankRowFlowMould, RankRowMould, RankTile}

// DefaultRank is the v2 sparsity-mode rank used when none is given: the
// best measured (TestV2Table).
const DefaultRank = RankFlowShare

// ParseRank parses a v2 ranking name; "" means DefaultRank.
func ParseRank(s string) (Rank, error) {
	switch r := Rank(s); r {
	case "":
		return DefaultRank, nil
	case RankFlowShare, RankRowFlow, RankRowFlowMould, RankRowMould, RankTile:
		return r, nil
	}
	return "", fmt.Errorf("prune: unknown v2 rank %q (want flow-share, row-flow, row-flow-mould, row-mould or tile)", s)
}

// usesMould reports whether the rank runs the kernel.
func (r Rank) usesMould() bool { return r != RankRowFlow && r != RankFlowShare }

// Importance returns the exact formula stored in physarium.importance for a
// method, mode and (activation-flow in sparsity mode) rank.
func Importance(m Method, mode kernel.Mode, r Rank) string {
	const a = "a_i=sqrt(in_sum2_i/count_i) (count 0 -> 1)"
	const stab = "; stability not computed"
	switch m {
	case MagnitudeFlow:
		return "|w|"
	case Magnitude:
		return "|w| ranked within each tensor (each matrix of a 3-D tensor on its own)"
	case Wanda:
		return "|w|*" + a + " ranked within each output row"
	}
	if mode == kernel.Natural {
		return "|w|*" + a + stab
	}
	const flow = "F*(1/rowsum(F)+1/colsum_band(F)), F=|w|*" + a + ", rowsum over the output row, colsum over the 256-row band"
	switch r {
	case RankRowFlow:
		return flow + "; ranked within each output row" + stab
	case RankRowFlowMould:
		return flow + fmt.Sprintf(", times %g where the mould fed F starves the tube (natural kill rule)", MouldPenalty) + "; ranked within each output row" + stab
	case RankFlowShare:
		return "F/rowsum(F), F=|w|*" + a + ", rowsum over the output row; ranked within each 256-row band of each matrix, the band's quota the sum of its rows' quotas" + stab
	case RankRowMould:
		return "F=|w|*" + a + fmt.Sprintf(", times %g where the mould fed F starves the tube (natural kill rule); ranked within each output row", MouldPenalty) + stab
	}
	return "D_T of the mould fed |w|*" + a + ", ranked within each 256x256 tile" + stab
}

// methodPlan is the per-run state of a method: the resolved options and,
// per target tensor, the activation scales.
type methodPlan struct {
	method   Method
	rank     Rank
	mode     kernel.Mode
	sparsity float64
	natural  kernel.Params // the mould's constants in natural mode (mould-informed ranks)
}

// rowRanked reports whether the method ranks weights row by row (the
// baselines and activation-flow's sparsity ranks other than the tile rank)
// instead of taking the kernel's mask.
func (m *methodPlan) rowRanked() bool {
	return m.method == Magnitude || m.method == Wanda || m.method == ActivationFlow && m.mode == kernel.Sparsity && m.rank != RankTile
}

// attachImatrix gives every target its activation scales from m; a target
// without an entry is an error unless fallback, which leaves it on |w|
// (v1 food) and lists it in the report.
func attachImatrix(plans []tensorPlan, m *imatrix.Matrix, fallback bool, r *Report) error {
	for i := range plans {
		p := &plans[i]
		if !p.target {
			continue
		}
		e, ok := m.Entries[p.info.Name]
		if !ok {
			if !fallback {
				return fmt.Errorf("prune: %s has no entry for target tensor %s (use --imatrix-missing v1 to prune it on |w| alone)", m.Path, p.info.Name)
			}
			r.ImatrixMissing = append(r.ImatrixMissing, p.info.Name)
			continue
		}
		a, err := e.Scales(p.row, p.mats)
		if err != nil {
			return fmt.Errorf("prune: %s: tensor %s: %w", m.Path, p.info.Name, err)
		}
		p.act = a
	}
	return nil
}

// describeImatrix is the value of physarium.imatrix.
func describeImatrix(m *imatrix.Matrix, missing []string) string {
	s := m.Describe()
	if len(missing) > 0 {
		s += ImatrixMissingMark + strings.Join(missing, ",")
	}
	return s
}

// rowSelect marks in mask the want - zeros lowest-scoring non-zero weights
// of one row (ties: lowest column), where zeros counts the row's weights
// that are already zero. idx is scratch of len(score).
func rowSelect(vals, score []float32, mask []byte, want int, idx []int32) int {
	idx = idx[:0]
	for i, v := range vals {
		if v != 0 {
			idx = append(idx, int32(i))
		}
	}
	want -= len(vals) - len(idx)
	if want <= 0 {
		return 0
	}
	want = min(want, len(idx))
	slices.SortFunc(idx, func(a, b int32) int {
		sa, sb := score[a], score[b]
		switch {
		case sa < sb:
			return -1
		case sa > sb:
			return 1
		}
		return int(a - b)
	})
	for _, i := range idx[:want] {
		mask[i] = 1
	}
	return want
}

// shareBand fills score (rows x row) with the RankFlowShare score
// F_oi / sum_j F_oj, F = |w|*a (a = 1 where act is nil), the row sum in
// float64; a row whose food is all zero scores 0.
func shareBand(score, vals, act []float32, rows, row int) {
	for r := 0; r < rows; r++ {
		srow := score[r*row : (r+1)*row]
		var rs float64
		for i, v := range vals[r*row : (r+1)*row] {
			f := float32(math.Abs(float64(v)))
			if act != nil {
				f *= act[i]
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

// scoreBand fills score (rows x row) for the row-ranked methods: F = |w|*a
// (a = 1 where act is nil) for Wanda and RankRowMould, the flow share for
// the RankRowFlow ranks; mould, when non-nil, is the natural-mode kill mask
// whose tubes get MouldPenalty.
func scoreBand(score, vals, act []float32, rows, row int, flow bool, mould []byte, colSum []float64) {
	for x, v := range vals[:rows*row] {
		f := float32(math.Abs(float64(v)))
		if act != nil {
			f *= act[x%row]
		}
		score[x] = f
	}
	if flow {
		colSum = colSum[:row]
		clear(colSum)
		for r := 0; r < rows; r++ {
			for i, f := range score[r*row : (r+1)*row] {
				colSum[i] += float64(f)
			}
		}
		for r := 0; r < rows; r++ {
			srow := score[r*row : (r+1)*row]
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
	if mould != nil {
		for x, m := range mould[:rows*row] {
			if m != 0 {
				score[x] *= MouldPenalty
			}
		}
	}
}
