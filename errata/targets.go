package errata

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// DefaultTargetPattern matches every attention and MLP projection weight of
// every block, dense and MoE forms alike.
const DefaultTargetPattern = `^blk\.[0-9]+\.(attn_(q|k|v|qkv|output)|ffn_(gate|up|down)(_exps|_shexp)?)\.weight$`

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
// only: prune also never targets norms, embeddings, the output head and
// tensors of fewer than two dimensions).
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
