package errata

import "fmt"

// The denominators (rule 2 of ERRATA.md: every rate names what it divides
// by). All counts are weights, i.e. tensor elements, but for TensorBlocks.
const (
	OfTarget      = "target"       // every element of every target tensor
	OfModel       = "model"        // every element of every tensor in the file
	OfTensor      = "tensor"       // every element of one tensor
	OfLayerTarget = "layer target" // the target elements of one block
	OfKilled      = "killed"       // the killed weights
	OfTensorBlock = "tensor block" // the ggml blocks of one tensor
)

// Rate is a fraction that always travels with its denominator (rule 2 of
// the errata): Numerator of Denominator, where Of names the denominator.
type Rate struct {
	Numerator   uint64  `json:"numerator"`
	Denominator uint64  `json:"denominator"`
	Of          string  `json:"of"`
	Percent     float64 `json:"percent"`
}

// NewRate returns num/den as a Rate over the named denominator; a zero
// denominator gives 0 %.
func NewRate(num, den uint64, of string) Rate {
	r := Rate{Numerator: num, Denominator: den, Of: of}
	if den > 0 {
		r.Percent = 100 * float64(num) / float64(den)
	}
	return r
}

// String formats the rate with its denominator, e.g.
// "22.2200 % (1450 of 6525 target weights)".
func (r Rate) String() string {
	return fmt.Sprintf("%.4f %% (%d of %d %s weights)", r.Percent, r.Numerator, r.Denominator, r.Of)
}

// Ratio is num/den as the rate keys store it (a fraction, not a percent;
// 0 when den is 0).
func Ratio(num, den uint64) float64 {
	if den == 0 {
		return 0
	}
	return float64(num) / float64(den)
}

// Weights holds the three denominators of ERRATA.md.
type Weights struct {
	Target    uint64 `json:"target"`    // every element of every target tensor
	Processed uint64 `json:"processed"` // every element some tile covered
	Model     uint64 `json:"model"`     // every element of every tensor in the file
}
