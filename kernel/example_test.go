package kernel_test

import (
	"fmt"
	"math"

	"github.com/physarium/physarium-gguf/kernel"
)

// A 16 x 16 tile pruned with the calibrated parameters: the kill count is
// over all of the tile's weights, the denominator of every rate.
func Example() {
	const rows, cols = 16, 16
	w := make([]float32, rows*cols)
	for x := range w {
		w[x] = float32(math.Sin(float64(x)*0.7)) * float32(1+x%5)
	}
	k, err := kernel.New(kernel.Auto, kernel.DefaultParams())
	if err != nil {
		fmt.Println(err)
		return
	}
	tiles := []kernel.Tile{{W: w, Rows: rows, Cols: cols}}
	if err := k.Run(tiles); err != nil {
		fmt.Println(err)
		return
	}
	st := tiles[0].Stats
	fmt.Printf("killed %d of %d weights\n", st.Killed, st.Weights)
	// Output: killed 50 of 256 weights
}
