package audit

import (
	"fmt"
	"slices"
	"strings"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/method"
)

// The labels of each method (version, activation_aware, importance, the
// count rule, whether it needs an importance matrix, the replay) are the
// method package's, which prune writes from too; TestMethodsMirrorPrune
// runs prune for every method, mode and rank and checks the audit against
// what it wrote.

// methodInfo is what the stored labels say about the run, once they are
// known to be consistent.
type methodInfo struct {
	method method.Method // nil when physarium.method names none
	mode   kernel.Mode
	rank   method.Rank // the rank whose formula physarium.importance states
	rule   method.Rule // nil: no count rule (natural mode)
	ok     bool        // version, method, mode and importance are what prune writes
	// fullFood: the importance states the full v2 food; fullRule is
	// then the run's count rule (nil in natural mode).
	fullFood bool
	fullRule method.Rule
}

// checkMethod checks physarium.version, method, activation_aware, mode,
// importance and imatrix against each other as prune writes them, and
// returns what they say.
func (a *auditor) checkMethod() methodInfo {
	r := a.r
	var labels methodInfo
	version, hasVersion := a.u64("version")
	name, hasMethod := a.str("method")
	modeS, hasMode := a.str("mode")
	if hasMode {
		switch modeS {
		case "natural":
			labels.mode = kernel.Natural
		case "sparsity":
			labels.mode = kernel.Sparsity
		default:
			r.disagree(errata.KeyPrefix+"mode", "", modeS, "natural or sparsity", BasisFile)
			hasMode = false
		}
	}
	if !hasMethod {
		return labels
	}
	m, known := method.Lookup(name)
	if !known {
		r.disagree(errata.KeyPrefix+"method", "", name, method.Names(nil), BasisFile)
		return labels
	}
	labels.method = m
	r.check(Check{Key: errata.KeyPrefix + "method", Stored: name, Recounted: name, Status: StatusExact, Basis: BasisFile, Note: "a method prune writes; version, activation_aware, mode, importance and imatrix are checked against it"})
	labels.ok = hasVersion && hasMode
	if hasVersion {
		want := m.Version()
		ck := Check{Key: errata.KeyPrefix + "version", Stored: fmt.Sprint(version), Recounted: fmt.Sprint(want), Status: statusOf(version == uint64(want)), Basis: BasisFile, Note: "the version prune writes for method " + name + " (0: a baseline that runs no Physarium kernel)"}
		r.check(ck)
		labels.ok = labels.ok && ck.Status == StatusExact
		if aa, ok := a.get("activation_aware"); ok {
			v, _ := aa.AsBool()
			a.stringCheck("activation_aware", fmt.Sprint(v), fmt.Sprint(m.ActivationAware()), BasisFile)
		}
	}
	if hasMode && m.Version() == 0 && labels.mode != kernel.Sparsity {
		r.disagree(errata.KeyPrefix+"mode", "", modeS, "sparsity (the "+name+" baseline runs in sparsity mode only)", BasisFile)
		labels.ok = false
	}
	if imp, ok := a.str("importance"); ok && hasMode {
		ranks := m.Ranks(labels.mode)
		if len(ranks) == 0 {
			ranks = []method.Rank{""}
		}
		want := make([]string, len(ranks))
		for i, x := range ranks {
			want[i] = m.Importance(method.Config{Params: kernel.Params{Mode: labels.mode}, Rank: x})
		}
		i := slices.Index(want, imp)
		if i < 0 {
			if x, rule, found := a.fullFoodLabels(m, labels.mode, imp); found {
				ranks, want, i = append(ranks, x), append(want, imp), len(want)
				labels.fullFood, labels.fullRule = true, rule
			}
		}
		ck := Check{Key: errata.KeyPrefix + "importance", Stored: imp, Recounted: strings.Join(want, " | "), Status: statusOf(i >= 0), Basis: BasisFile, Note: "the formula prune writes for method " + name + " in " + modeS + " mode"}
		if i >= 0 {
			ck.Recounted = imp
			labels.rank = ranks[i]
			if labels.rank != "" {
				ck.Note += ", rank " + string(labels.rank)
			}
		}
		r.check(ck)
		labels.ok = labels.ok && i >= 0
	}
	a.checkImatrix(m)
	labels.rule = m.Rule(method.Config{Params: kernel.Params{Mode: labels.mode}, Rank: labels.rank})
	if labels.fullFood {
		labels.rule = labels.fullRule
	}
	if p, ok := a.storedPattern(); ok {
		labels.rule = method.PatternRule{P: p}
	}
	return labels
}

// checkImatrix checks that physarium.imatrix is present for the methods
// that read an importance matrix, and absent for the others unless a
// target is of an IQ grid type (whose re-encoding reads one), and that the targets it lists as
// missing (--imatrix-missing v1) are distinct targets of the file.
func (a *auditor) checkImatrix(m method.Method) {
	r := a.r
	key := errata.KeyPrefix + "imatrix"
	s, has := a.str("imatrix")
	if _, present := a.file.KV(key); present && !has {
		return // mistyped, reported by checkTypes
	}
	switch {
	case has && !m.NeedsImatrix() && !a.weightedTarget():
		r.disagree(key, "", s, "absent: method "+m.Name()+" reads no importance matrix and no target is re-encoded with one (an IQ grid type)", BasisFile)
		return
	case !has && m.NeedsImatrix():
		r.disagree(key, "", "missing", "a STRING naming the importance matrix (method "+m.Name()+" reads one)", BasisFile)
		return
	case !has:
		return
	}
	desc, list, _ := strings.Cut(s, errata.ImatrixMissingMark)
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

// ruleKills returns the kills rule fixes for a tensor of shape shape at
// sparsity s, given the original's zeros per row and 256-column segment
// (scan.segZeros), matrix after matrix.
func ruleKills(rule method.Rule, shape []uint64, seg []uint16, s float64) (uint64, bool) {
	if rule == nil || len(shape) < 2 || shape[0] == 0 {
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
	for m := range mats {
		mat := seg[m*rows*segs : (m+1)*rows*segs]
		k += rule.Kills(rows, row, s, func(r0, r1, c0, c1 int) int {
			z := 0
			for r := r0; r < r1; r++ {
				for _, n := range mat[r*segs+c0 : r*segs+c1] {
					z += int(n)
				}
			}
			return z
		})
	}
	return k, true
}
