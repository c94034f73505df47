package method

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/kernel"
)

func TestRegistry(t *testing.T) {
	if got := Names(nil); got != "magnitude-flow, activation-flow, magnitude, sparsegpt or wanda" {
		t.Errorf("Names: %q", got)
	}
	if got := Names(Method.NeedsImatrix); got != "activation-flow or wanda" {
		t.Errorf("the methods that read an imatrix: %q", got)
	}
	if _, err := Parse("bogus"); err == nil || err.Error() != `unknown method "bogus" (want magnitude-flow, activation-flow, magnitude, sparsegpt or wanda)` {
		t.Errorf("Parse(bogus): %v", err)
	}
	if _, err := ParseRank("sideways"); err == nil || err.Error() != `unknown v2 rank "sideways" (want flow-share, row-flow, row-flow-mould, row-mould or tile)` {
		t.Errorf("ParseRank(sideways): %v", err)
	}
	if r, err := ParseRank(""); err != nil || r != DefaultRank || DefaultRank != RankFlowShare {
		t.Errorf("ParseRank(\"\") = %q, %v", r, err)
	}
	for _, tc := range []struct {
		name    string
		version int
		aware   bool
	}{{MagnitudeFlow, 1, false}, {ActivationFlow, 2, true}, {Magnitude, 0, false}, {Wanda, 0, true}} {
		m, err := Parse(tc.name)
		if err != nil || m.Name() != tc.name || m.Version() != tc.version || m.ActivationAware() != tc.aware || m.NeedsImatrix() != tc.aware {
			t.Errorf("%s: %v version %d aware %v", tc.name, err, m.Version(), m.ActivationAware())
		}
	}
}

// TestImportance states every formula physarium.importance carries.
func TestImportance(t *testing.T) {
	const a = "a_i=sqrt(in_sum2_i/count_i) (count 0 -> 1)"
	natural := Config{Params: kernel.Params{Mode: kernel.Natural}}
	sparsity := Config{Params: kernel.Params{Mode: kernel.Sparsity, Sparsity: 0.5}}
	for _, tc := range []struct {
		name string
		cfg  Config
		rank Rank
		want string
	}{
		{MagnitudeFlow, natural, "", "|w|"},
		{MagnitudeFlow, sparsity, "", "|w|"},
		{Magnitude, sparsity, "", "|w| ranked within each tensor (each matrix of a 3-D tensor on its own)"},
		{Wanda, sparsity, "", "|w|*" + a + " ranked within each output row"},
		{ActivationFlow, natural, "", "|w|*" + a + "; stability not computed"},
		{ActivationFlow, sparsity, "", "F/rowsum(F), F=|w|*" + a + ", rowsum over the output row; ranked within each 256-row band of each matrix, the band's quota the sum of its rows' quotas; stability not computed"},
		{ActivationFlow, sparsity, RankRowFlow, "F*(1/rowsum(F)+1/colsum_band(F)), F=|w|*" + a + ", rowsum over the output row, colsum over the 256-row band; ranked within each output row; stability not computed"},
		{ActivationFlow, sparsity, RankRowFlowMould, "F*(1/rowsum(F)+1/colsum_band(F)), F=|w|*" + a + ", rowsum over the output row, colsum over the 256-row band, times 0.5 where the mould fed F starves the tube (natural kill rule); ranked within each output row; stability not computed"},
		{ActivationFlow, sparsity, RankRowMould, "F=|w|*" + a + ", times 0.5 where the mould fed F starves the tube (natural kill rule); ranked within each output row; stability not computed"},
		{ActivationFlow, sparsity, RankTile, "D_T of the mould fed |w|*" + a + ", ranked within each 256x256 tile; stability not computed"},
	} {
		m, _ := Lookup(tc.name)
		cfg := tc.cfg
		cfg.Rank = tc.rank
		if got := m.Importance(cfg); got != tc.want {
			t.Errorf("%s %s %s:\n got %s\nwant %s", tc.name, cfg.Params.Mode, tc.rank, got, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	natural := Config{Params: kernel.DefaultParams()}
	for _, name := range []string{Magnitude, Wanda} {
		m, _ := Lookup(name)
		if err := m.Validate(natural); err == nil || !strings.Contains(err.Error(), "needs sparsity mode") {
			t.Errorf("%s in natural mode: %v", name, err)
		}
		if m.Rule(natural) != nil {
			t.Errorf("%s: a count rule in natural mode", name)
		}
	}
	af, _ := Lookup(ActivationFlow)
	if err := af.Validate(Config{Rank: "sideways"}); err == nil {
		t.Error("an unknown rank accepted")
	}
	if af.Ranks(kernel.Natural) != nil || len(af.Ranks(kernel.Sparsity)) != 5 {
		t.Error("activation-flow's ranks")
	}
}

// TestRules checks each count rule against the quotas it sums: with no
// zeros in the original, the row and band rules kill exactly
// round(s*rows*cols) per matrix, the tile rule the sum of its tiles'
// round(s*n); an all-zero original loses nothing.
func TestRules(t *testing.T) {
	const rows, cols, s = 600, 300, 0.37
	none := func(r0, r1, c0, c1 int) int { return 0 }
	all := func(r0, r1, c0, c1 int) int {
		return (r1 - r0) * (min(c1*errata.TileSize, cols) - c0*errata.TileSize)
	}
	tiles := uint64(0)
	for _, nr := range errata.Bands(rows) {
		tiles += uint64(errata.TileQuota(nr*256, s) + errata.TileQuota(nr*44, s))
	}
	for _, tc := range []struct {
		rule Rule
		want uint64
	}{{RowRule{}, 66600}, {BandRule{}, 66600}, {MatrixRule{}, 66600}, {TileRule{}, tiles}} {
		if got := tc.rule.Kills(rows, cols, s, none); got != tc.want {
			t.Errorf("%s: %d kills, want %d", tc.rule, got, tc.want)
		}
		if got := tc.rule.Kills(rows, cols, s, all); got != 0 {
			t.Errorf("%s: %d kills of an all-zero matrix", tc.rule, got)
		}
	}
}

// band returns a band of rows x cols random values, about one in ten zero.
func band(r *rand.Rand, rows, cols int) *Band {
	b := &Band{Values: make([]float32, rows*cols), Rows: rows, Cols: cols}
	for i := range b.Values {
		if r.IntN(10) != 0 {
			b.Values[i] = float32(r.NormFloat64())
		}
	}
	return b
}

// TestRankedDeciders checks the quotas of the deciders that rank weights
// themselves: every row (wanda) or the band (flow-share) ends with its
// quota of zeros, no zero is marked, and each marked weight scores no
// higher than any survivor of its row (wanda).
func TestRankedDeciders(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	cfg := Config{Params: kernel.Params{Mode: kernel.Sparsity, Sparsity: 0.4}}
	for _, name := range []string{Wanda, ActivationFlow} {
		m, _ := Lookup(name)
		d, err := m.NewDecider(cfg)
		if err != nil {
			t.Fatal(err)
		}
		b := band(r, 70, 45)
		b.MatrixRow0, b.Row0 = 256, 256
		b.Act = make([]float32, b.Cols)
		for i := range b.Act {
			b.Act[i] = float32(r.Float64() + 0.1)
		}
		mask := make([]byte, b.Rows*b.Cols)
		c, err := d.Decide(b, mask)
		if err != nil {
			t.Fatal(err)
		}
		if c.Processed != uint64(b.Rows*b.Cols) {
			t.Errorf("%s: processed %d", name, c.Processed)
		}
		total := 0
		for row := range b.Rows {
			zeros := 0
			for i := row * b.Cols; i < (row+1)*b.Cols; i++ {
				if mask[i] != 0 && b.Values[i] == 0 {
					t.Fatalf("%s: a zero marked", name)
				}
				if mask[i] != 0 || b.Values[i] == 0 {
					zeros++
				}
			}
			total += zeros
			if q := errata.RowQuota(256+row, b.Cols, 0.4); name == Wanda && zeros != max(q, zeros) {
				t.Errorf("wanda row %d: %d zeros, quota %d", row, zeros, q)
			}
		}
		if q := errata.BandQuota(256, b.Rows, b.Cols, 0.4); name == ActivationFlow && total != q {
			t.Errorf("flow-share: %d zeros, band quota %d", total, q)
		}
	}
}

// TestMagnitudeThreshold prepares a two-band matrix with ties and checks
// that exactly round(s*n) weights end at zero, the smallest, ties by index.
func TestMagnitudeThreshold(t *testing.T) {
	const rows, cols, s = 300, 20, 0.3
	r := rand.New(rand.NewPCG(5, 6))
	vals := make([]float32, rows*cols)
	for i := range vals {
		vals[i] = float32(r.IntN(50)-25) / 8 // many ties, some zeros
	}
	m, _ := Lookup(Magnitude)
	cfg := Config{Params: kernel.Params{Mode: kernel.Sparsity, Sparsity: s}}
	tensor := Tensor{Name: "t", Cols: cols, Rows: rows, Matrices: 1, ReadBand: func(b int, dst []float32) ([]float32, error) {
		r0 := b * errata.TileSize
		return append(dst[:0], vals[r0*cols:min(r0+errata.TileSize, rows)*cols]...), nil
	}}
	state, err := m.(Preparer).Prepare(context.Background(), tensor, cfg)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := m.NewDecider(cfg)
	mask := make([]byte, len(vals))
	for b, nr := range errata.Bands(rows) {
		band := &Band{Values: vals[b*cols : (b+nr)*cols], Rows: nr, Cols: cols, Row0: b, MatrixRow0: b, Index: b / errata.TileSize, State: state}
		if _, err := d.Decide(band, mask[b*cols:(b+nr)*cols]); err != nil {
			t.Fatal(err)
		}
	}
	zeros, cut := 0, float32(0)
	for i, v := range vals {
		if mask[i] != 0 || v == 0 {
			zeros++
		}
		if mask[i] != 0 {
			cut = max(cut, abs(v))
		}
	}
	if zeros != 1800 {
		t.Errorf("%d zeros, want %d", zeros, 1800)
	}
	for i, v := range vals {
		if mask[i] == 0 && v != 0 && abs(v) < cut {
			t.Fatalf("weight %d (|%g|) survives below the cut %g", i, v, cut)
		}
	}
}

func abs(v float32) float32 { return max(v, -v) }

// TestFiniteRefused: a decider names the first NaN of a band by its
// element, row and column within the tensor.
func TestFiniteRefused(t *testing.T) {
	for _, m := range All() {
		cfg := Config{Params: kernel.DefaultParams()}
		cfg.Params.Mode, cfg.Params.Sparsity = kernel.Sparsity, 0.5
		d, err := m.NewDecider(cfg)
		if err != nil {
			t.Fatal(err)
		}
		b := band(rand.New(rand.NewPCG(1, 1)), 4, 8)
		b.Row0 = 10
		b.Values[13] = float32(nan())
		b.State = []magThreshold{{tiesBefore: make([]uint64, 2)}}
		_, err = d.Decide(b, make([]byte, 32))
		if err == nil || !strings.Contains(err.Error(), "element 93 (row 11, column 5) is NaN") {
			t.Errorf("%s: %v", m.Name(), err)
		}
	}
}
