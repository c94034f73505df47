package audit

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/physarium/physarium-gguf/kernel"
)

// ParseParams parses the value of physarium.params (kernel.Params.String's
// format, "g=1.75 T=4 K=2 h=0.5 theta=0.29", with " sparsity=S" appended in
// sparsity mode) together with physarium.mode ("natural" or "sparsity").
// Every key must appear exactly once, in any order; sparsity must appear in
// sparsity mode and only there. The result is validated (kernel.Params
// Validate), and ParseParams(p.String(), p.Mode.String()) gives back p.
func ParseParams(s, mode string) (kernel.Params, error) {
	var p kernel.Params
	switch mode {
	case "natural":
		p.Mode = kernel.Natural
	case "sparsity":
		p.Mode = kernel.Sparsity
	default:
		return p, fmt.Errorf("audit: mode %q: want natural or sparsity", mode)
	}
	seen := map[string]bool{}
	f32 := func(v string) (float32, error) {
		x, err := strconv.ParseFloat(v, 32)
		return float32(x), err
	}
	for _, field := range strings.Fields(s) {
		k, v, ok := strings.Cut(field, "=")
		if !ok {
			return p, fmt.Errorf("audit: params %q: %q is not key=value", s, field)
		}
		if seen[k] {
			return p, fmt.Errorf("audit: params %q: %s given twice", s, k)
		}
		seen[k] = true
		var err error
		switch k {
		case "g":
			p.G, err = f32(v)
		case "T":
			p.Steps, err = strconv.Atoi(v)
		case "K":
			p.CGIters, err = strconv.Atoi(v)
		case "h":
			p.H, err = f32(v)
		case "theta":
			p.Theta, err = f32(v)
		case "sparsity":
			if p.Mode != kernel.Sparsity {
				return p, fmt.Errorf("audit: params %q: sparsity given in %s mode", s, mode)
			}
			p.Sparsity, err = strconv.ParseFloat(v, 64)
		default:
			return p, fmt.Errorf("audit: params %q: unknown key %q", s, k)
		}
		if err != nil {
			return p, fmt.Errorf("audit: params %q: %s: %w", s, k, err)
		}
	}
	want := []string{"g", "T", "K", "h", "theta"}
	if p.Mode == kernel.Sparsity {
		want = append(want, "sparsity")
	}
	for _, k := range want {
		if !seen[k] {
			return p, fmt.Errorf("audit: params %q: %s missing", s, k)
		}
	}
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("audit: params %q: %w", s, err)
	}
	return p, nil
}
