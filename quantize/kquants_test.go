package quantize

import (
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
)

func TestParityQ2_K(t *testing.T) { checkParity(t, gguf.TypeQ2_K) }
func TestParityQ3_K(t *testing.T) { checkParity(t, gguf.TypeQ3_K) }
func TestParityQ4_K(t *testing.T) { checkParity(t, gguf.TypeQ4_K) }
func TestParityQ5_K(t *testing.T) { checkParity(t, gguf.TypeQ5_K) }
func TestParityQ6_K(t *testing.T) { checkParity(t, gguf.TypeQ6_K) }
