package audit

import (
	"fmt"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/method"
	"github.com/physarium/physarium-gguf/obs"
	"github.com/physarium/physarium-gguf/quantize"
)

// storedPattern returns physarium.pattern parsed, and whether the file
// has one.
func (a *auditor) storedPattern() (method.Pattern, bool) {
	s, ok := a.str(errata.KeyPattern)
	if !ok {
		return method.Pattern{}, false
	}
	p, err := method.ParsePattern(s)
	if err != nil {
		a.r.disagree(errata.KeyPrefix+errata.KeyPattern, "", s, err.Error(), BasisFile)
		return method.Pattern{}, false
	}
	return p, true
}

// checkNM checks that every group of M consecutive weights of every row
// of every decodable target reads at least N zeros (a row's shorter last
// group obs.GroupQuota) (physarium.pattern);
// with the kill counts exact by the pattern's rule, that makes exactly N
// where the original had no more.
func (a *auditor) checkNM() {
	p, ok := a.storedPattern()
	if !ok {
		return
	}
	key := errata.KeyPrefix + errata.KeyPattern
	checked, failed := 0, 0
	for _, t := range a.r.Tensors {
		ti, found := a.file.Tensor(t.Name)
		if !found || len(ti.Shape) < 2 || !t.Decoded {
			a.r.check(Check{Key: key, Tensor: t.Name, Stored: p.String(), Recounted: "-", Status: StatusUnverifiable, Basis: BasisFile, Note: "the type cannot be decoded"})
			continue
		}
		checked++
		bad, first, err := a.shortGroups(ti, p)
		switch {
		case err != nil:
			failed++
			a.r.disagree(key, t.Name, p.String(), err.Error(), BasisFile)
		case bad > 0:
			failed++
			a.r.disagree(key, t.Name, p.String(), fmt.Sprintf("%d groups of %d hold fewer than %d zeros (first: element %d)", bad, p.M, p.N, first), BasisFile)
		}
	}
	if failed == 0 && checked > 0 {
		a.r.check(Check{Key: key, Stored: p.String(), Recounted: fmt.Sprintf("every group of %d weights of every row of the %d decodable targets holds at least %d zeros (a shorter last group its share)", p.M, checked, p.N), Status: StatusExact, Basis: BasisFile})
	}
}

// shortGroups counts the groups of tensor ti with fewer than p.N zeros,
// reading errata.TileSize rows at a time.
func (a *auditor) shortGroups(ti gguf.TensorInfo, p method.Pattern) (bad, first uint64, err error) {
	cols := int(ti.Shape[0])
	rows := int(ti.Elements()) / cols
	rowBytes := int(ti.Bytes()) / rows
	sr := a.file.TensorReader(ti)
	raw := make([]byte, min(rows, errata.TileSize)*rowBytes)
	vals := make([]float32, min(rows, errata.TileSize)*cols)
	for r0 := 0; r0 < rows; r0 += errata.TileSize {
		nr := min(errata.TileSize, rows-r0)
		if _, err := sr.ReadAt(raw[:nr*rowBytes], int64(r0)*int64(rowBytes)); err != nil {
			return 0, 0, fmt.Errorf("read rows %d-%d: %w", r0, r0+nr-1, err)
		}
		if err := quantize.Decode(ti.Type, vals[:nr*cols], raw[:nr*rowBytes]); err != nil {
			return 0, 0, err
		}
		for r := range nr {
			for c0 := 0; c0 < cols; c0 += p.M {
				lo, hi := r*cols+c0, r*cols+min(c0+p.M, cols)
				z := 0
				for _, v := range vals[lo:hi] {
					if v == 0 {
						z++
					}
				}
				if z < obs.GroupQuota(p.N, p.M, hi-lo) {
					if bad == 0 {
						first = uint64(r0*cols + lo)
					}
					bad++
				}
			}
		}
	}
	return bad, first, nil
}
