package audit

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/prune"
)

// What prune writes for each method. Every rule is prune's own (method
// names: prune.ParseMethod; versions: Method.Version; importance matrices:
// Method.NeedsImatrix; formulas: prune.Importance; quotas: errata.RowQuota
// and errata.BandQuota; activation_aware: prune.Keys; the wording:
// prune.Errata), called here so the two cannot drift.
// TestMethodsMirrorPrune runs prune for every method, mode and rank and
// checks the audit against what it wrote.

// activationAware is the physarium.activation_aware prune.Keys writes for
// version and method.
func activationAware(version int, method string) bool {
	for _, kv := range prune.Keys(&prune.Report{Version: version, Method: method}) {
		if kv.Key == errata.KeyPrefix+"activation_aware" {
			b, _ := kv.Value.AsBool()
			return b
		}
	}
	return false
}

// rule is how a method's sparsity mode decides how many weights die, which
// fixes the kill count of every tensor from the original's zeros alone.
type rule int

const (
	ruleNone   rule = iota // natural mode: no count rule
	ruleTile               // per 256x256 tile: round(s*n) zeros (the kernel's sparsity mode)
	ruleRow                // per output row o of n weights: errata.RowQuota(o, n, s) zeros
	ruleBand               // per 256-row band [o0, o0+r): errata.BandQuota(o0, r, n, s) zeros
	ruleMatrix             // per matrix (each expert on its own): round(s*n) zeros
)

func (r rule) String() string {
	switch r {
	case ruleTile:
		return "each 256x256 tile ends with round(s*n) zeros"
	case ruleRow:
		return "output row o of n weights ends with round(s*(o+1)*n)-round(s*o*n) zeros"
	case ruleBand:
		return "the 256-row band of rows [o0, o0+r) ends with round(s*(o0+r)*n)-round(s*o0*n) zeros"
	case ruleMatrix:
		return "each matrix ends with round(s*n) zeros"
	}
	return "none"
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
			r.disagree(errata.KeyPrefix+"mode", "", modeS, "natural or sparsity", BasisFile)
			hasMode = false
		}
	}
	if !hasMethod {
		return mi
	}
	m, err := prune.ParseMethod(method)
	if err != nil || method == "" {
		r.disagree(errata.KeyPrefix+"method", "", method, "magnitude-flow, activation-flow, magnitude or wanda", BasisFile)
		return mi
	}
	mi.method = m
	r.check(Check{Key: errata.KeyPrefix + "method", Stored: method, Recounted: method, Status: StatusExact, Basis: BasisFile, Note: "a method prune writes; version, activation_aware, mode, importance and imatrix are checked against it"})
	mi.ok = hasVersion && hasMode
	if hasVersion {
		want := m.Version()
		ck := Check{Key: errata.KeyPrefix + "version", Stored: fmt.Sprint(version), Recounted: fmt.Sprint(want), Status: statusOf(version == uint64(want)), Basis: BasisFile, Note: "the version prune writes for method " + method + " (0: a baseline that runs no Physarium kernel)"}
		r.check(ck)
		mi.ok = mi.ok && ck.Status == StatusExact
		if aa, ok := a.get("activation_aware"); ok {
			v, _ := aa.AsBool()
			a.stringCheck("activation_aware", fmt.Sprint(v), fmt.Sprint(activationAware(int(version), method)), BasisFile)
		}
	}
	if hasMode && m.Version() == 0 && mi.mode != kernel.Sparsity {
		r.disagree(errata.KeyPrefix+"mode", "", modeS, "sparsity (the "+method+" baseline runs in sparsity mode only)", BasisFile)
		mi.ok = false
	}
	if imp, ok := a.str("importance"); ok && hasMode {
		var want []string
		var rk []prune.Rank
		if m == prune.ActivationFlow && mi.mode == kernel.Sparsity {
			for _, x := range prune.Ranks {
				want, rk = append(want, prune.Importance(m, mi.mode, x)), append(rk, x)
			}
		} else {
			want, rk = []string{prune.Importance(m, mi.mode, "")}, []prune.Rank{""}
		}
		i := slices.Index(want, imp)
		ck := Check{Key: errata.KeyPrefix + "importance", Stored: imp, Recounted: strings.Join(want, " | "), Status: statusOf(i >= 0), Basis: BasisFile, Note: "the formula prune writes for method " + method + " in " + modeS + " mode"}
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
		case m == prune.ActivationFlow && mi.rank == prune.RankFlowShare:
			mi.rule = ruleBand
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
const missingMark = prune.ImatrixMissingMark

// checkImatrix checks that physarium.imatrix is present exactly for the
// methods that read an importance matrix, and that the targets it lists as
// missing (--imatrix-missing v1) are distinct targets of the file.
func (a *auditor) checkImatrix(m prune.Method) {
	r := a.r
	key := errata.KeyPrefix + "imatrix"
	s, has := a.str("imatrix")
	if _, present := a.f.KV(key); present && !has {
		return // mistyped, reported by checkTypes
	}
	switch {
	case has && !m.NeedsImatrix():
		r.disagree(key, "", s, "absent: method "+string(m)+" reads no importance matrix", BasisFile)
		return
	case !has && m.NeedsImatrix():
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
	segs := (row + errata.TileSize - 1) / errata.TileSize
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
				lose(errata.RowQuota(o, row, s), sum(mat[o*segs:(o+1)*segs]))
			}
		case ruleBand:
			for r0, nr := range errata.Bands(rows) {
				lose(errata.BandQuota(r0, nr, row, s), sum(mat[r0*segs:(r0+nr)*segs]))
			}
		case ruleTile:
			for r0, nr := range errata.Bands(rows) {
				for c := 0; c < segs; c++ {
					cols := min(errata.TileSize, row-c*errata.TileSize)
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
