//go:build !cgo

package llamacpp_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/llamacpp"
)

// TestLoadWithoutCgo: a cgo-free build says what it needs.
func TestLoadWithoutCgo(t *testing.T) {
	_, err := llamacpp.Load(t.TempDir())
	if !errors.Is(err, llamacpp.ErrUnavailable) || !strings.Contains(err.Error(), "CGO_ENABLED=1") {
		t.Errorf("Load without cgo: %v", err)
	}
}
