package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
)

// TestInspectEscapesOddNames checks that keys and tensor names with
// control characters or invalid UTF-8 (which llama.cpp accepts) are
// printed escaped in the text form and kept distinguishable in JSON.
func TestInspectEscapesOddNames(t *testing.T) {
	p := writeGGUF(t, []gguf.KV{
		{Key: "general.architecture", Value: gguf.String("llama")},
		{Key: "odd\x1b[31m.key", Value: gguf.Uint32(1)},
		{Key: "bad\xff.key", Value: gguf.Uint32(2)},
	}, []gguf.TensorInfo{
		{Name: "t\nname", Type: gguf.TypeF32, Shape: []uint64{4}},
		{Name: "u\xfe", Type: gguf.TypeF32, Shape: []uint64{4}},
		{Name: "", Type: gguf.TypeF32, Shape: []uint64{4}},
	})
	text := mustRun(t, "inspect", p)
	if strings.ContainsAny(text, "\x1b\xff\xfe") || strings.Contains(text, "t\nname") {
		t.Fatalf("raw control bytes or invalid UTF-8 in the text form:\n%q", text)
	}
	for _, want := range []string{`"odd\x1b[31m.key"`, `"bad\xff.key"`, `"t\nname"`, `"u\xfe"`, `  ""  `} {
		if !strings.Contains(text, want) {
			t.Errorf("text form lacks %s:\n%s", want, text)
		}
	}
	var out struct {
		KV      []struct{ Key string }
		Tensors []struct{ Name string }
	}
	if err := json.Unmarshal([]byte(mustRun(t, "inspect", "--json", p)), &out); err != nil {
		t.Fatal(err)
	}
	keys := []string{out.KV[1].Key, out.KV[2].Key}
	names := []string{out.Tensors[0].Name, out.Tensors[1].Name, out.Tensors[2].Name}
	if keys[0] != "odd\x1b[31m.key" || keys[1] != `bad\xff.key` {
		t.Errorf("JSON keys %q", keys)
	}
	if names[0] != "t\nname" || names[1] != `u\xfe` || names[2] != "" {
		t.Errorf("JSON names %q", names)
	}
}
