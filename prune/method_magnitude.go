package prune

import (
	"context"
	"fmt"
	"math"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/quantize"
)

// magThreshold is the per-matrix cut of the Magnitude baseline: every
// weight whose key (the bits of |w|) is below pivot dies, and of the weights
// whose key equals pivot the first need, in index order, die. tiesBefore[b]
// counts the weights equal to pivot in the bands of the matrix before band b.
type magThreshold struct {
	pivot      uint32
	need       uint64
	tiesBefore []uint64 // per band of the tensor (global band index)
}

// magKey is the ordering key of a weight: the bits of |w|, so that keys
// compare like magnitudes (zero first).
func magKey(v float32) uint32 { return math.Float32bits(v) &^ (1 << 31) }

// magnitudeThresholds finds, for each matrix of each target tensor, the
// exact threshold of the Magnitude baseline at sparsity s: the
// k = round(s*n)-th smallest |w| of the matrix (n = its weights, zeros
// included and ranked first), ties broken by index. It needs no more memory
// than one band and 65536 counters per matrix: three decode passes over
// the matrix, a histogram of the high 16 bits of the keys, a histogram of
// the low 16 bits inside the chosen bucket, then the count of weights equal
// to the threshold in each band.
func magnitudeThresholds(ctx context.Context, f *gguf.File, plans []tensorPlan, s float64) error {
	var raw []byte
	var vals []float32
	for ti := range plans {
		p := &plans[ti]
		if !p.target {
			continue
		}
		perMat := (p.rows + errata.TileSize - 1) / errata.TileSize
		p.mag = make([]magThreshold, p.mats)
		for m := 0; m < p.mats; m++ {
			// decode calls fn with the values of each band of matrix m.
			decode := func(fn func(band int, v []float32)) error {
				for b := m * perMat; b < (m+1)*perMat; b++ {
					if err := ctx.Err(); err != nil {
						return err
					}
					row0, rows := p.band(b)
					nb := rows * p.rowBytes
					raw = grow(raw, nb)
					vals = grow(vals, rows*p.row)
					off := f.DataOffset + int64(p.info.Offset) + int64(row0)*int64(p.rowBytes)
					if _, err := f.ReadAt(raw, off); err != nil {
						return fmt.Errorf("prune: %s: tensor %s: read rows %d-%d: %w", f.Path, p.info.Name, row0, row0+rows-1, err)
					}
					if err := quantize.Decode(p.info.Type, vals, raw); err != nil {
						return fmt.Errorf("prune: %s: tensor %s: %w", f.Path, p.info.Name, err)
					}
					fn(b, vals)
				}
				return nil
			}
			n := uint64(p.rows) * uint64(p.row)
			k := uint64(math.Round(s * float64(n)))
			t := &p.mag[m]
			t.tiesBefore = make([]uint64, perMat+1)
			if k == 0 {
				t.pivot, t.need = 0, 0 // nothing below key 0, no tie dies
				continue
			}
			var hist [1 << 16]uint64
			if err := decode(func(_ int, v []float32) {
				for _, x := range v {
					hist[magKey(x)>>16]++
				}
			}); err != nil {
				return err
			}
			need := k
			hi := 0
			for ; hi < len(hist)-1 && need > hist[hi]; hi++ {
				need -= hist[hi]
			}
			clear(hist[:])
			if err := decode(func(_ int, v []float32) {
				for _, x := range v {
					if key := magKey(x); int(key>>16) == hi {
						hist[key&0xffff]++
					}
				}
			}); err != nil {
				return err
			}
			lo := 0
			for ; lo < len(hist)-1 && need > hist[lo]; lo++ {
				need -= hist[lo]
			}
			t.pivot, t.need = uint32(hi)<<16|uint32(lo), need
			first := m * perMat
			if err := decode(func(b int, v []float32) {
				var c uint64
				for _, x := range v {
					if magKey(x) == t.pivot {
						c++
					}
				}
				t.tiesBefore[b-first+1] = t.tiesBefore[b-first] + c
			}); err != nil {
				return err
			}
		}
	}
	return nil
}

// magnitudeMask marks the kills of the Magnitude baseline in one band
// (band b of the tensor, values vals) and returns how many.
func magnitudeMask(p *tensorPlan, b int, vals []float32, mask []byte) int {
	perMat := (p.rows + errata.TileSize - 1) / errata.TileSize
	t := &p.mag[b/perMat]
	ties := t.tiesBefore[b%perMat]
	killed := 0
	for i, v := range vals {
		if v == 0 {
			continue
		}
		key := magKey(v)
		if key < t.pivot {
			mask[i] = 1
			killed++
		} else if key == t.pivot {
			if ties < t.need {
				mask[i] = 1
				killed++
			}
			ties++
		}
	}
	return killed
}
