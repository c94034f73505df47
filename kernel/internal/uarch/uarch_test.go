package uarch

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"testing"
)

var table = flag.Bool("uarch", false, "print the machine table of docs/KERNEL.md (best of 3 runs of every loop)")

// TestMachineTable prints the clock and every loop's cycles per
// instruction and lanes per cycle, docs/KERNEL.md's machine table. By
// default it measures only the clock and the 256-bit fused multiply-add
// and square root, once each, and checks them against what any x86-64
// core with AVX2 does: a clock of 0.5-10 GHz, at most four fused
// multiply-adds a cycle, a square root no faster than one a cycle.
func TestMachineTable(t *testing.T) {
	runs := 3
	list := Ops()
	if !*table {
		runs, list = 1, []Op{FMAYmm, SqrtYmm}
	}
	hz, err := Hz(runs)
	if errors.Is(err, ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if hz < 0.5e9 || hz > 10e9 {
		t.Errorf("clock %.2f GHz, outside 0.5-10 GHz", hz/1e9)
	}
	out := os.Stderr
	fmt.Fprintf(out, "clock: %.2f GHz\n\n| instruction | cycles each | lanes per cycle |\n|---|---:|---:|\n", hz/1e9)
	for _, o := range list {
		if o == Clock {
			continue
		}
		c, err := Cycles(o, hz, runs)
		if errors.Is(err, ErrUnavailable) {
			fmt.Fprintf(out, "| %s | not available | |\n", o)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		lanes := ""
		switch o {
		case SqrtDivZmm, SqrtFMAYmm:
			fmt.Fprintf(out, "| %s | %.1f a round | |\n", o, c)
			continue
		case FMAZmm, MulZmm, AddZmm, SqrtZmm, DivZmm, Rsqrt14Zmm:
			lanes = fmt.Sprintf("%.1f", 16/c)
		default:
			lanes = fmt.Sprintf("%.1f", 8/c)
		}
		fmt.Fprintf(out, "| %s | %.2f | %s |\n", o, c, lanes)
		switch o {
		case FMAYmm:
			if c < 0.25 {
				t.Errorf("%s: %.2f cycles each, more than four a cycle", o, c)
			}
		case SqrtYmm:
			if c < 1 {
				t.Errorf("%s: %.2f cycles each, more than one a cycle", o, c)
			}
		}
	}
}
