package errata

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// DefaultTargetPattern matches the weights of every target role of the role
// table (Roles, docs/TARGETS.md): the attention projections (MLA and
// encoder-decoder forms too), the feed-forward projections (dense, fused,
// expert, shared, chunked, latent and routed forms), the state-space in and
// out projections and RWKV's time-mix and channel-mix projections, in
// numbered blocks only.
const DefaultTargetPattern = `^(blk\.[0-9]+\.(attn_(q|k|v|qkv|kv|output|gate|q_a|q_b|kv_a_mqa|kv_b|k_b|v_b|output_a|output_b)|ffn_(gate|up|down)(_exps|_shexp|_chexps|\.[0-9]+)?|ffn_gate_up_exps|ffn_(latent|routed)_(down|up)|ssm_(in|out)|shortconv\.(in|out)_proj|time_mix_(key|value|receptance|gate|output)|channel_mix_(key|value|receptance))|(enc|dec)\.blk\.[0-9]+\.(attn_[qkvo]|ffn_(gate|up|down))|dec\.blk\.[0-9]+\.cross_attn_[qkvo])\.weight$`

// The prefixes of physarium.targets entries after the default pattern.
const (
	IncludeEntry = "include "
	ExcludeEntry = "exclude "
	LayersEntry  = "layers "
)

var blockIndex = regexp.MustCompile(`^blk\.([0-9]+)\.`)

// Layer returns the block index of a tensor named "blk.N....".
func Layer(name string) (int, bool) {
	m := blockIndex.FindStringSubmatch(name)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	return n, err == nil
}

// Kind returns the projection kind of a tensor name: "attn_q",
// "ffn_down_exps", ... (the part between the block index and ".weight"),
// or the whole name for tensors outside blocks.
func Kind(name string) string {
	k := blockIndex.ReplaceAllString(name, "")
	return strings.TrimSuffix(k, ".weight")
}

// LayerError is a list of block indices that ParseLayers refuses.
type LayerError struct {
	List   string // the whole list
	Part   string // the entry at fault
	Reason string // "is not a block index or range", "too large"
}

// Error is the message with the package and the list.
func (e *LayerError) Error() string {
	return fmt.Sprintf("errata: layers %q: %s", e.List, e.Detail())
}

// Detail is the message without the package and list, e.g.
// `"x" is not a block index or range`.
func (e *LayerError) Detail() string {
	if e.Reason == "too large" {
		return fmt.Sprintf("range %q too large", e.Part)
	}
	return fmt.Sprintf("%q %s", e.Part, e.Reason)
}

// ParseLayers parses a list of block indices and ranges such as "0-3,7".
// Its errors are *LayerError.
func ParseLayers(s string) (map[int]bool, error) {
	layers := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, &LayerError{List: s, Part: part, Reason: "is not a block index or range"}
		}
		b := a
		if isRange {
			b, err = strconv.Atoi(hi)
			if err != nil || b < a {
				return nil, &LayerError{List: s, Part: part, Reason: "is not a block index or range"}
			}
		}
		if b-a > 1<<20 {
			return nil, &LayerError{List: s, Part: part, Reason: "too large"}
		}
		for i := a; i <= b; i++ {
			layers[i] = true
		}
	}
	return layers, nil
}

// TargetEntries returns the value of physarium.targets for a selection:
// the default pattern, then "include RE", "exclude RE" and "layers L"
// entries.
func TargetEntries(include, exclude []string, layers string) []string {
	entries := []string{DefaultTargetPattern}
	for _, p := range include {
		entries = append(entries, IncludeEntry+p)
	}
	for _, p := range exclude {
		entries = append(entries, ExcludeEntry+p)
	}
	if layers != "" {
		entries = append(entries, LayersEntry+layers)
	}
	return entries
}

// Targets is a parsed physarium.targets value.
type Targets struct {
	base, include, exclude []*regexp.Regexp
	layers                 map[int]bool // nil: every layer
}

// errNotEntry is the refusal of an entry of unknown form.
var errNotEntry = errors.New("not a pattern entry")

// ParseTargets parses a physarium.targets value. On error it also returns
// the entry at fault.
func ParseTargets(entries []string) (*Targets, string, error) {
	t := &Targets{}
	for i, p := range entries {
		var err error
		var re *regexp.Regexp
		switch {
		case strings.HasPrefix(p, IncludeEntry):
			re, err = regexp.Compile(strings.TrimPrefix(p, IncludeEntry))
			t.include = append(t.include, re)
		case strings.HasPrefix(p, ExcludeEntry):
			re, err = regexp.Compile(strings.TrimPrefix(p, ExcludeEntry))
			t.exclude = append(t.exclude, re)
		case strings.HasPrefix(p, LayersEntry):
			t.layers, err = ParseLayers(strings.TrimPrefix(p, LayersEntry))
		case i == 0:
			re, err = regexp.Compile(p)
			t.base = append(t.base, re)
		default:
			err = errNotEntry
		}
		if err != nil {
			return nil, p, err
		}
	}
	return t, "", nil
}

// Match reports whether the entries choose a tensor name (the name rules
// only: prune also never targets what Classify marks Never: biases, 1-D
// tensors, norms, embeddings, routers, output heads, convolutions, lerp
// and decay vectors).
func (t *Targets) Match(name string) bool {
	m := false
	for _, re := range append(t.base, t.include...) {
		m = m || re.MatchString(name)
	}
	for _, re := range t.exclude {
		m = m && !re.MatchString(name)
	}
	if m && t.layers != nil {
		l, has := Layer(name)
		m = has && t.layers[l]
	}
	return m
}
