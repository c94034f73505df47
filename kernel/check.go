package kernel

import (
	"fmt"
	"math"
)

// checkTile validates a tile; fast lets the AVX2 helper scan the weights
// (the Go loop then runs only to name the first bad weight).
func checkTile(t *Tile, fast bool) error {
	if err := checkShape(t); err != nil {
		return err
	}
	if t.Act != nil {
		if len(t.Act) < t.Cols {
			return fmt.Errorf("len(Act)=%d < cols %d", len(t.Act), t.Cols)
		}
		for i, a := range t.Act[:t.Cols] {
			if !(a >= 0 && a <= math.MaxFloat32) {
				return fmt.Errorf("activation %d is %v (want finite, >= 0)", i, a)
			}
		}
	}
	stride := t.stride()
	if fast && checkAVX2(t, stride) {
		return nil
	}
	for o := 0; o < t.Rows; o++ {
		row := t.W[o*stride : o*stride+t.Cols]
		for i, w := range row {
			if !(abs32(w) <= math.MaxFloat32) {
				return fmt.Errorf("weight (%d,%d) is %v", o, i, w)
			}
			if t.Act != nil && !(abs32(w)*t.Act[i] <= math.MaxFloat32) {
				return fmt.Errorf("food |w|*a at (%d,%d) overflows float32", o, i)
			}
		}
	}
	return nil
}

// checkShape validates the shape, the strides and the lengths of W and Mask.
func checkShape(t *Tile) error {
	if t.Rows < 1 || t.Rows > MaxDim || t.Cols < 1 || t.Cols > MaxDim {
		return fmt.Errorf("shape %dx%d outside 1..%d", t.Rows, t.Cols, MaxDim)
	}
	stride := t.stride()
	if stride < t.Cols {
		return fmt.Errorf("stride %d < cols %d", stride, t.Cols)
	}
	if t.Rows > 1 && stride > len(t.W) {
		return fmt.Errorf("stride %d > len(W)=%d", stride, len(t.W))
	}
	if need := (t.Rows-1)*stride + t.Cols; len(t.W) < need {
		return fmt.Errorf("len(W)=%d < %d", len(t.W), need)
	}
	if t.MaskStride != 0 {
		if t.MaskStride < t.Cols {
			return fmt.Errorf("mask stride %d < cols %d", t.MaskStride, t.Cols)
		}
		if need := (t.Rows-1)*t.MaskStride + t.Cols; len(t.Mask) < need {
			return fmt.Errorf("len(Mask)=%d < %d (mask stride %d)", len(t.Mask), need, t.MaskStride)
		}
	}
	return nil
}

// stride returns the distance between the rows of the tile's weights.
func (t *Tile) stride() int {
	if t.Stride == 0 {
		return t.Cols
	}
	return t.Stride
}

// maskStride returns the distance between the rows of the tile's mask.
func (t *Tile) maskStride() int {
	if t.MaskStride != 0 {
		return t.MaskStride
	}
	return t.Cols
}
