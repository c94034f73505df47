package quantize

import (
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
)

func TestParityTQ1_0(t *testing.T) { checkParity(t, gguf.TypeTQ1_0) }
func TestParityTQ2_0(t *testing.T) { checkParity(t, gguf.TypeTQ2_0) }
