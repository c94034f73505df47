package errata

import "fmt"

// Figures are the numbers the errata wording of a pruned file states.
type Figures struct {
	Version     int    // physarium.version
	Method      string // physarium.method
	Importance  string // physarium.importance
	Killed      uint64
	Weights     Weights
	TargetCount int // target tensors
	// Reconstructed says the method also changed surviving weights
	// (physarium.reconstructed); SurvivorsChanged counts them.
	Reconstructed    bool
	SurvivorsChanged uint64
}

// closing ends every wording (rule 1: surgery and evaluation apart).
const closing = "These are surgery figures; perplexity or benchmark numbers come from a separate evaluation and must be quoted separately, with their own test set."

// Wording returns the ERRATA.md wording of a pruned file (physarium.errata)
// with the figures filled in.
func Wording(f Figures) string {
	overTarget := NewRate(f.Killed, f.Weights.Target, OfTarget)
	overModel := NewRate(f.Killed, f.Weights.Model, OfModel)
	coverage := NewRate(f.Weights.Processed, f.Weights.Target, OfTarget)
	return fmt.Sprintf("Physarium-v%d surgery (%s): %d of %d target projection weights killed (%.4f %%, denominator: all weights of the %d target tensors); %d of %d model weights (%.4f %%, denominator: every tensor in the file). Tile coverage of the target tensors: %.4f %% (non-overlapping 256x256 tiles). %s %s",
		f.Version, f.Method, f.Killed, f.Weights.Target, overTarget.Percent, f.TargetCount,
		f.Killed, f.Weights.Model, overModel.Percent, coverage.Percent, foodSentence(f)+movedSentence(f), closing)
}

// movedSentence says that survivors moved, when they did.
func movedSentence(f Figures) string {
	if !f.Reconstructed {
		return ""
	}
	return fmt.Sprintf(" The survivors moved: %d of %d target weights that were not killed changed value to preserve each layer's output on the calibration inputs (denominator: all weights of the target tensors), so the file is not the original with weights zeroed.", f.SurvivorsChanged, f.Weights.Target)
}

// foodSentence says what the mould ate.
func foodSentence(f Figures) string {
	switch f.Version {
	case 0:
		return fmt.Sprintf("Baseline, no Physarium kernel ran (physarium.version 0): the %s method killed the weights with the smallest %s.", f.Method, f.Importance)
	case 1:
		return "v1 eats static weight magnitude only: it sees no activations, no gradients, no contribution to the loss."
	}
	return fmt.Sprintf("v%d eats %s: activation statistics from an importance matrix, no gradients; stability is not computed.", f.Version, f.Importance)
}

// ControlFigures are the numbers the wording of a control twin states.
type ControlFigures struct {
	Version     int
	Weights     Weights
	TargetCount int
	Reencoded   uint64 // blocks the pruned twin re-encoded
	Of          string // the pruned twin's base name
	OfSHA256    string // and its sha256
}

// ControlWording returns the errata wording of a control twin.
func ControlWording(c ControlFigures) string {
	return fmt.Sprintf("Physarium-v%d control twin (re-encoding only): 0 of %d target projection weights killed (0.0000 %%, denominator: all weights of the %d target tensors); 0 of %d model weights (0.0000 %%, denominator: every tensor in the file). The %d blocks that the pruned twin %s (sha256 %s) re-encoded are re-encoded here the same way from the original values, with nothing zeroed; every other block is the original. perplexity(control) - perplexity(original) is the re-encoding cost, perplexity(pruned) - perplexity(control) the pruning cost. %s",
		c.Version, c.Weights.Target, c.TargetCount, c.Weights.Model, c.Reencoded, c.Of, c.OfSHA256, closing)
}
