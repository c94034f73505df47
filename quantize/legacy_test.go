package quantize

import (
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
)

func TestParityQ4_0(t *testing.T) { checkParity(t, gguf.TypeQ4_0) }
func TestParityQ4_1(t *testing.T) { checkParity(t, gguf.TypeQ4_1) }
func TestParityQ5_0(t *testing.T) { checkParity(t, gguf.TypeQ5_0) }
func TestParityQ5_1(t *testing.T) { checkParity(t, gguf.TypeQ5_1) }
func TestParityQ8_0(t *testing.T) { checkParity(t, gguf.TypeQ8_0) }
