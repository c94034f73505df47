package audit

import (
	"testing"

	"github.com/physarium/physarium-gguf/kernel"
)

// TestParamsRoundTrip: String -> ParseParams -> String gives the same text
// and the same parameters, in both modes.
func TestParamsRoundTrip(t *testing.T) {
	def := kernel.DefaultParams()
	odd := kernel.Params{G: 1 + 1.0/256 + 0.5, Steps: 17, CGIters: 1, H: 0.1, Theta: 1.9999, Mode: kernel.Natural}
	var list []kernel.Params
	for _, p := range []kernel.Params{def, odd} {
		list = append(list, p)
		for _, s := range []float64{0, 0.3, 1.0 / 3, 1} {
			q := p
			q.Mode, q.Sparsity = kernel.Sparsity, s
			list = append(list, q)
		}
	}
	for _, p := range list {
		s := p.String()
		got, err := ParseParams(s, p.Mode.String())
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if got != p || got.String() != s {
			t.Errorf("%q %s: parsed %+v (%q), want %+v", s, p.Mode, got, got.String(), p)
		}
	}
	if s := def.String(); s != "g=1.75 T=4 K=2 h=0.5 theta=0.29" {
		t.Errorf("default params render as %q", s)
	}
}

func TestParamsRejects(t *testing.T) {
	for _, tc := range []struct{ s, mode string }{
		{"g=1.75 T=4 K=2 h=0.5 theta=0.29", "sparse"},
		{"g=1.75 T=4 K=2 h=0.5", "natural"},                          // theta missing
		{"g=1.75 T=4 K=2 h=0.5 theta=0.29 sparsity=0.3", "natural"},  // sparsity in natural mode
		{"g=1.75 T=4 K=2 h=0.5 theta=0.29", "sparsity"},              // sparsity missing
		{"g=1.75 T=4 K=2 h=0.5 theta=0.29 theta=0.3", "natural"},     // twice
		{"g=1.75 T=4 K=2 h=0.5 theta=0.29 x=1", "natural"},           // unknown
		{"g=1.7 T=4 K=2 h=0.5 theta=0.29", "natural"},                // g not a multiple of 1/256
		{"g=1.75 T=0 K=2 h=0.5 theta=0.29", "natural"},               // T out of range
		{"g=1.75 T=4 K=2 h=0.5 theta=0.29 sparsity=1.5", "sparsity"}, // out of range
		{"g=1.75 T=4 K=2 h=0.5 theta=NaN", "natural"},                // invalid
		{"g=1.75 T=4 K=two h=0.5 theta=0.29", "natural"},             // not a number
		{"g=1.75 T=4 K=2 h=0.5 theta", "natural"},                    // no value
		{"", "natural"},
	} {
		if p, err := ParseParams(tc.s, tc.mode); err == nil {
			t.Errorf("%q %s: accepted as %+v", tc.s, tc.mode, p)
		}
	}
}
