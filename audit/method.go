package audit

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/prune"
)

// What prune writes for each method. Where prune exposes the rule (method
// names: prune.ParseMethod; activation_aware: prune.Keys; the wording:
// prune.Errata) it is called, so the two cannot drift. Three rules are
// unexported in prune and mirrored here: Method.version, Method.activation
// and importance (the physarium.importance formula per method, mode and
// rank), plus rowQuota. TestMethodsMirrorPrune runs prune for every method,
// mode and rank and checks the mirrors against what it wrote.

// methodVersion mirrors prune's Method.version: 1 and 2 are the mould's
// versions, 0 a plain baseline that runs no Physarium kernel.
func methodVersion(m prune.Method) int {
	switch m {
	case prune.MagnitudeFlow:
		return 1
	case prune.ActivationFlow:
		return 2
	}
	return 0
}

// methodActivation mirrors prune's Method.activation: the method needs an
// importance matrix (and prune writes physarium.imatrix).
func methodActivation(m prune.Method) bool {
	return m == prune.ActivationFlow || m == prune.Wanda
}

// activationAware is the physarium.activation_aware prune.Keys writes for
// version and method.
func activationAware(version int, method string) bool {
	for _, kv := range prune.Keys(&prune.Report{Version: version, Method: method}) {
		if kv.Key == prune.KeyPrefix+"activation_aware" {
			b, _ := kv.Value.AsBool()
			return b
		}
	}
	return false
}

// ranks are prune's v2 sparsity-mode ranks.
var ranks = []prune.Rank{prune.RankRowFlow, prune.RankRowFlowMould, prune.RankRowMould, prune.RankTile}

// importance mirrors prune's importance: the exact physarium.importance of a
// method, mode and (activation-flow in sparsity mode) rank.
func importance(m prune.Method, mode kernel.Mode, r prune.Rank) string {
	const a = "a_i=sqrt(in_sum2_i/count_i) (count 0 -> 1)"
	const stab = "; stability not computed"
	switch m {
	case prune.MagnitudeFlow:
		return "|w|"
	case prune.Magnitude:
		return "|w| ranked within each tensor (each matrix of a 3-D tensor on its own)"
	case prune.Wanda:
		return "|w|*" + a + " ranked within each output row"
	}
	if mode == kernel.Natural {
		return "|w|*" + a + stab
	}
	const flow = "F*(1/rowsum(F)+1/colsum_band(F)), F=|w|*" + a + ", rowsum over the output row, colsum over the 256-row band"
	switch r {
	case prune.RankRowFlow:
		return flow + "; ranked within each output row" + stab
	case prune.RankRowFlowMould:
		return flow + fmt.Sprintf(", times %g where the mould fed F starves the tube (natural kill rule)", prune.MouldPenalty) + "; ranked within each output row" + stab
	case prune.RankRowMould:
		return "F=|w|*" + a + fmt.Sprintf(", times %g where the mould fed F starves the tube (natural kill rule); ranked within each output row", prune.MouldPenalty) + stab
	}
	return "D_T of the mould fed |w|*" + a + ", ranked within each 256x256 tile" + stab
}

// rule is how a method's sparsity mode decides how many weights die, which
// fixes the kill count of every tensor from the original's zeros alone.
type rule int

const (
	ruleNone   rule = iota // natural mode: no count rule
	ruleTile               // per 256x256 tile: round(s*n) zeros (the kernel's sparsity mode)
	ruleRow                // per output row o of n weights: rowQuota(o, n, s) zeros
	ruleMatrix             // per matrix (each expert on its own): round(s*n) zeros
)

func (r rule) String() string {
	switch r {
	case ruleTile:
		return "each 256x256 tile ends with round(s*n) zeros"
	case ruleRow:
		return "output row o of n weights ends with round(s*(o+1)*n)-round(s*o*n) zeros"
	case ruleMatrix:
		return "each matrix ends with round(s*n) zeros"
	}
	return "none"
}

// rowQuota mirrors prune's rowQuota: the zeros row o (0-based within its
// matrix) of rows of n weights ends with at sparsity s.
func rowQuota(o, n int, s float64) int {
	return int(math.Round(s*float64(o+1)*float64(n))) - int(math.Round(s*float64(o)*float64(n)))
}

// methodInfo is what the stored labels say about the run, once they are
// known to be consistent.
type methodInfo struct {
	method prune.Method
	mode   kernel.Mode
	rank   prune.Rank // activation-flow in sparsity mode
	rule   rule
	ok     bool // version, method, mode and importance are what prune writes
}

// checkMethod checks physarium.version, method, activation_aware, mode,
// importance and imatrix against each other as prune writes them, and
// returns what they say.
func (a *auditor) checkMethod() methodInfo {
	r := a.r
	var mi methodInfo
	version, hasVersion := a.u64("version")
	method, hasMethod := a.str("method")
	modeS, hasMode := a.str("mode")
	if hasMode {
		switch modeS {
		case "natural":
			mi.mode = kernel.Natural
		case "sparsity":
			mi.mode = kernel.Sparsity
		default:
			r.disagree(prune.KeyPrefix+"mode", "", modeS, "natural or sparsity", BasisFile)
			hasMode = false
		}
	}
	if !hasMethod {
		return mi
	}
	m, err := prune.ParseMethod(method)
	if err != nil || method == "" {
		r.disagree(prune.KeyPrefix+"method", "", method, "magnitude-flow, activation-flow, magnitude or wanda", BasisFile)
		return mi
	}
	mi.method = m
	r.check(Check{Key: prune.KeyPrefix + "method", Stored: method, Recounted: method, Status: StatusExact, Basis: BasisFile, Note: "a method prune writes; version, activation_aware, mode, importance and imatrix are checked against it"})
	mi.ok = hasVersion && hasMode
	if hasVersion {
		want := methodVersion(m)
		ck := Check{Key: prune.KeyPrefix + "version", Stored: fmt.Sprint(version), Recounted: fmt.Sprint(want), Status: statusOf(version == uint64(want)), Basis: BasisFile, Note: "the version prune writes for method " + method + " (0: a baseline that runs no Physarium kernel)"}
		r.check(ck)
		mi.ok = mi.ok && ck.Status == StatusExact
		if aa, ok := a.get("activation_aware"); ok {
			v, _ := aa.AsBool()
			a.stringCheck("activation_aware", fmt.Sprint(v), fmt.Sprint(activationAware(int(version), method)), BasisFile)
		}
	}
	if hasMode && methodVersion(m) == 0 && mi.mode != kernel.Sparsity {
		r.disagree(prune.KeyPrefix+"mode", "", modeS, "sparsity (the "+method+" baseline runs in sparsity mode only)", BasisFile)
		mi.ok = false
	}
	if imp, ok := a.str("importance"); ok && hasMode {
		var want []string
		var rk []prune.Rank
		if m == prune.ActivationFlow && mi.mode == kernel.Sparsity {
			for _, x := range ranks {
				want, rk = append(want, importance(m, mi.mode, x)), append(rk, x)
			}
		} else {
			want, rk = []string{importance(m, mi.mode, "")}, []prune.Rank{""}
		}
		i := slices.Index(want, imp)
		ck := Check{Key: prune.KeyPrefix + "importance", Stored: imp, Recounted: strings.Join(want, " | "), Status: statusOf(i >= 0), Basis: BasisFile, Note: "the formula prune writes for method " + method + " in " + modeS + " mode"}
		if i >= 0 {
			ck.Recounted = imp
			mi.rank = rk[i]
			if mi.rank != "" {
				ck.Note += ", rank " + string(mi.rank)
			}
		}
		r.check(ck)
		mi.ok = mi.ok && i >= 0
	}
	a.checkImatrix(m)
	if mi.mode == kernel.Sparsity {
		switch {
		case m == prune.Magnitude:
			mi.rule = ruleMatrix
		case m == prune.Wanda, m == prune.ActivationFlow && mi.rank != prune.RankTile:
			mi.rule = ruleRow
		default:
			mi.rule = ruleTile
		}
	}
	return mi
}

// missingMark starts the list of targets pruned on v1 food in
// physarium.imatrix (prune's describeImatrix).
const missingMark = " missing(v1 food |w|)="

// checkImatrix checks that physarium.imatrix is present exactly for the
// methods that read an importance matrix, and that the targets it lists as
// missing (--imatrix-missing v1) are distinct targets of the file.
func (a *auditor) checkImatrix(m prune.Method) {
	r := a.r
	key := prune.KeyPrefix + "imatrix"
	s, has := a.str("imatrix")
	if _, present := a.f.KV(key); present && !has {
		return // mistyped, reported by checkTypes
	}
	switch {
	case has && !methodActivation(m):
		r.disagree(key, "", s, "absent: method "+string(m)+" reads no importance matrix", BasisFile)
		return
	case !has && methodActivation(m):
		r.disagree(key, "", "missing", "a STRING naming the importance matrix (method "+string(m)+" reads one)", BasisFile)
		return
	case !has:
		return
	}
	desc, list, _ := strings.Cut(s, missingMark)
	ck := Check{Key: key, Stored: s, Recounted: "-", Status: StatusUnverifiable, Basis: BasisFile, Note: "the audit is not given the importance matrix; its description is not verified"}
	if f := strings.Fields(desc); len(f) < 5 || !strings.HasPrefix(f[1], "format=") {
		ck.Recounted, ck.Status = "<base name> format=<gguf|dat> datasets=<...> chunks=<N> chunk_size=<M>[ missing(v1 food |w|)=<targets>]", StatusDisagrees
		r.check(ck)
		return
	}
	if list != "" {
		targets := map[string]bool{}
		for _, n := range r.targetNames() {
			targets[n] = true
		}
		seen := map[string]bool{}
		names := strings.Split(list, ",")
		for _, n := range names {
			switch {
			case seen[n]:
				r.disagree(key, n, "listed twice as pruned on v1 food", "each target at most once", BasisFile)
			case !targets[n]:
				r.disagree(key, n, "listed as pruned on v1 food", "not a target of the file", BasisFile)
			}
			seen[n] = true
		}
		ck.Note += fmt.Sprintf("; the %d targets it lists as pruned on |w| alone (--imatrix-missing v1) are distinct targets of the file", len(names))
	}
	r.check(ck)
}

// ruleKills returns the kills rule ru fixes for a tensor of shape shape at
// sparsity s, given the original's zeros per row segment (scan.segZeros):
// every group (tile, row or matrix) ends with its quota of zeros, the
// weights already zero counting first, so a group with z zeros and quota q
// loses max(q-z, 0) weights.
func ruleKills(ru rule, shape []uint64, seg []uint16, s float64) (uint64, bool) {
	if len(shape) < 2 || shape[0] == 0 {
		return 0, false
	}
	row, rows := int(shape[0]), int(shape[1])
	mats := 1
	for _, n := range shape[2:] {
		mats *= int(n)
	}
	segs := (row + prune.TileSize - 1) / prune.TileSize
	if len(seg) != mats*rows*segs {
		return 0, false
	}
	var k uint64
	lose := func(q, z int) {
		if q > z {
			k += uint64(q - z)
		}
	}
	sum := func(xs []uint16) int {
		n := 0
		for _, x := range xs {
			n += int(x)
		}
		return n
	}
	for m := 0; m < mats; m++ {
		mat := seg[m*rows*segs : (m+1)*rows*segs]
		switch ru {
		case ruleMatrix:
			lose(int(math.Round(s*float64(rows)*float64(row))), sum(mat))
		case ruleRow:
			for o := 0; o < rows; o++ {
				lose(rowQuota(o, row, s), sum(mat[o*segs:(o+1)*segs]))
			}
		case ruleTile:
			for r0 := 0; r0 < rows; r0 += prune.TileSize {
				nr := min(prune.TileSize, rows-r0)
				for c := 0; c < segs; c++ {
					cols := min(prune.TileSize, row-c*prune.TileSize)
					z := 0
					for r := r0; r < r0+nr; r++ {
						z += int(mat[r*segs+c])
					}
					lose(int(math.Round(s*float64(nr*cols))), z)
				}
			}
		default:
			return 0, false
		}
	}
	return k, true
}
