package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"

	ucli "github.com/urfave/cli/v2"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
)

func (a *App) inspectCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "inspect",
		Usage:     "print a GGUF file's header, metadata and tensors",
		ArgsUsage: "FILE",
		Description: `Prints the version, alignment and data offset, every metadata key with its
type and value, and every tensor (name, type, shape, absolute data offset,
bytes). The physarium.* keys and the errata wording (physarium.errata) of a
pruned file are printed first.

In text form long arrays are shortened to their first 8 elements and long
strings to 512 bytes. --json prints everything whole, as
  {"version":3,"alignment":32,"data_offset":N,
   "kv":[{"key":K,"type":"UINT32","value":V},
         {"key":K,"type":"ARRAY","elem_type":"STRING","value":[...]}, ...],
   "tensors":[{"name":N,"type":"Q4_K","shape":[ne0,ne1],"offset":N,"bytes":N}, ...]}
with NaN and infinite floats as the strings "NaN", "+Inf" and "-Inf", and
offsets counted from the start of the file.

Examples:
  physarium-gguf inspect model.gguf
  physarium-gguf inspect --json model.gguf | jq -r '.tensors[] | select(.type=="Q4_K") | .name'`,
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "json", Usage: "print JSON (whole arrays) instead of text"},
			splitFlag,
		},
		Action: a.inspect,
	}
}

func (a *App) inspect(c *ucli.Context) error {
	pos, err := args(c, "FILE")
	if err != nil {
		return err
	}
	m, err := gguf.OpenModel(pos[0], gguf.ModelOptions{AnyShard: c.Bool("split")})
	if err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	defer m.Close()
	f := m.View
	w := bufio.NewWriter(a.Stdout)
	if c.Bool("json") {
		err = writeInspectJSON(w, m)
	} else {
		err = writeInspectText(w, m)
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		return fmt.Errorf("inspect: %s: %w", f.Path, err)
	}
	return nil
}

// Text form.

const (
	textArrayHead = 8   // array elements shown in text form
	textStringMax = 512 // bytes of a string shown in text form
)

func writeInspectText(w io.Writer, m *gguf.Model) error {
	f := m.Shards[0]
	fmt.Fprintf(w, "file:        %s\n", f.Path)
	fmt.Fprintf(w, "size:        %d bytes\n", f.Size)
	fmt.Fprintf(w, "version:     %d\n", f.Version)
	fmt.Fprintf(w, "alignment:   %d\n", f.Alignment)
	fmt.Fprintf(w, "data offset: %d\n", f.DataOffset)
	if m.Split() {
		fmt.Fprintf(w, "shards:      %d (llama.cpp split; every figure below is over the whole model)\n", len(m.Shards))
		for i, s := range m.Shards {
			fmt.Fprintf(w, "  %d  %s  %d bytes, %d tensors\n", i+1, s.Path, s.Size, len(s.Tensors))
		}
	}
	f = m.View
	fmt.Fprintf(w, "metadata:    %d keys\n", len(f.KVs))
	fmt.Fprintf(w, "tensors:     %d\n", len(f.Tensors))

	var phys []gguf.KV
	for _, kv := range f.KVs {
		if strings.HasPrefix(kv.Key, errata.KeyPrefix) {
			phys = append(phys, kv)
		}
	}
	if len(phys) > 0 {
		fmt.Fprintf(w, "\n=== PHYSARIUM SURGERY RECORD (%d physarium.* keys) ===\n", len(phys))
		if kv, ok := f.KV(errata.KeyPrefix + errata.KeyErrata); ok {
			s, _ := kv.Value.AsString()
			fmt.Fprintf(w, "\nERRATA (physarium.errata):\n")
			for _, line := range strings.Split(wrap(s, 76), "\n") {
				fmt.Fprintf(w, "  %s\n", line)
			}
			fmt.Fprintln(w)
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, kv := range phys {
			if kv.Key == errata.KeyPrefix+errata.KeyErrata {
				continue
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", kv.Key, typeName(kv.Value), textValue(kv.Value, -1))
		}
		tw.Flush()
		fmt.Fprintln(w, "=== end of surgery record ===")
	}

	fmt.Fprintf(w, "\nmetadata (%d keys):\n", len(f.KVs))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, kv := range f.KVs {
		max := textStringMax
		if strings.HasPrefix(kv.Key, errata.KeyPrefix) {
			max = -1
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", shownText(kv.Key), typeName(kv.Value), textValue(kv.Value, max))
	}
	tw.Flush()

	fmt.Fprintf(w, "\ntensors (%d):\n", len(f.Tensors))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	shardCol := ""
	if m.Split() {
		shardCol = "shard\t"
	}
	fmt.Fprintf(tw, "  name\ttype\tshape\t%soffset\tbytes\n", shardCol)
	var total, elems uint64
	for i, t := range f.Tensors {
		sf, st := m.ShardTensor(i)
		if m.Split() {
			shardCol = fmt.Sprintf("%d\t", m.ShardOf[i]+1)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s%d\t%d\n", shownText(t.Name), t.Type, shapeString(t.Shape), shardCol, uint64(sf.DataOffset)+st.Offset, t.Bytes())
		total += t.Bytes()
		elems += t.Elements()
	}
	tw.Flush()
	fmt.Fprintf(w, "  total: %d tensors, %d elements, %d bytes of tensor data\n", len(f.Tensors), elems, total)
	return nil
}

// wrap breaks s into lines of at most width bytes at spaces (longer words
// stay whole); existing newlines are kept.
func wrap(s string, width int) string {
	var b strings.Builder
	for i, para := range strings.Split(s, "\n") {
		if i > 0 {
			b.WriteByte('\n')
		}
		n := 0
		for j, word := range strings.Fields(para) {
			if j > 0 {
				if n+1+len(word) > width {
					b.WriteByte('\n')
					n = 0
				} else {
					b.WriteByte(' ')
					n++
				}
			}
			b.WriteString(word)
			n += len(word)
		}
	}
	return b.String()
}

func typeName(v gguf.Value) string {
	if v.Type == gguf.TypeArray {
		return "[" + v.Elem.String() + "]"
	}
	return v.Type.String()
}

func shapeString(s []uint64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = strconv.FormatUint(d, 10)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// textValue formats v for the text form: strings quoted (cut at max bytes
// when max >= 0), arrays shortened to their first textArrayHead elements.
func textValue(v gguf.Value, max int) string {
	if v.Type != gguf.TypeArray {
		return scalarText(v.Data, max)
	}
	if a, ok := v.Data.(*gguf.ArrayRef); ok {
		return a.String()
	}
	n := v.Len()
	shown := n
	if shown > textArrayHead {
		shown = textArrayHead
	}
	parts := make([]string, 0, shown+1)
	for i := 0; i < shown; i++ {
		parts = append(parts, scalarText(index(v.Data, i), textStringMax))
	}
	if shown < n {
		parts = append(parts, fmt.Sprintf("... (%d elements)", n))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func scalarText(x any, max int) string {
	switch x := x.(type) {
	case string:
		if max >= 0 && len(x) > max {
			return strconv.Quote(x[:max]) + fmt.Sprintf("... (%d bytes)", len(x))
		}
		return strconv.Quote(x)
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	default:
		return fmt.Sprint(x)
	}
}

// index returns element i of a typed array slice.
func index(data any, i int) any {
	switch d := data.(type) {
	case []uint8:
		return d[i]
	case []int8:
		return d[i]
	case []uint16:
		return d[i]
	case []int16:
		return d[i]
	case []uint32:
		return d[i]
	case []int32:
		return d[i]
	case []float32:
		return d[i]
	case []bool:
		return d[i]
	case []string:
		return d[i]
	case []uint64:
		return d[i]
	case []int64:
		return d[i]
	case []float64:
		return d[i]
	}
	return nil
}

// JSON form.

type inspectJSON struct {
	Version    uint32       `json:"version"`
	Alignment  uint64       `json:"alignment"`
	DataOffset int64        `json:"data_offset"`
	Shards     []shardJSON  `json:"shards,omitempty"` // a split model's, in order
	KV         []kvJSON     `json:"kv"`
	Tensors    []tensorJSON `json:"tensors"`
}

type shardJSON struct {
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	Tensors int    `json:"tensors"`
}

type kvJSON struct {
	Key      string          `json:"key"`
	Type     string          `json:"type"`
	ElemType string          `json:"elem_type,omitempty"`
	Value    json.RawMessage `json:"value"`
}

type tensorJSON struct {
	Name   string   `json:"name"`
	Type   string   `json:"type"`
	Shape  []uint64 `json:"shape"`
	Shard  *int     `json:"shard,omitempty"` // 1-based, in a split model; offset is in that shard
	Offset uint64   `json:"offset"`
	Bytes  uint64   `json:"bytes"`
}

func writeInspectJSON(w io.Writer, m *gguf.Model) error {
	f := m.Shards[0]
	out := inspectJSON{
		Version:    f.Version,
		Alignment:  f.Alignment,
		DataOffset: f.DataOffset,
		KV:         make([]kvJSON, 0, len(f.KVs)),
		Tensors:    make([]tensorJSON, 0, len(f.Tensors)),
	}
	if m.Split() {
		for _, s := range m.Shards {
			out.Shards = append(out.Shards, shardJSON{Path: s.Path, Size: s.Size, Tensors: len(s.Tensors)})
		}
	}
	for _, kv := range f.KVs {
		raw, err := valueJSON(kv.Value)
		if err != nil {
			return fmt.Errorf("key %s: %w", kv.Key, err)
		}
		k := kvJSON{Key: shownJSON(kv.Key), Type: kv.Value.Type.String(), Value: raw}
		if kv.Value.Type == gguf.TypeArray {
			k.ElemType = kv.Value.Elem.String()
		}
		out.KV = append(out.KV, k)
	}
	for i, t := range m.View.Tensors {
		shape := append([]uint64{}, t.Shape...)
		sf, st := m.ShardTensor(i)
		tj := tensorJSON{
			Name:   shownJSON(t.Name),
			Type:   t.Type.String(),
			Shape:  shape,
			Offset: uint64(sf.DataOffset) + st.Offset,
			Bytes:  t.Bytes(),
		}
		if m.Split() {
			no := m.ShardOf[i] + 1
			tj.Shard = &no
		}
		out.Tensors = append(out.Tensors, tj)
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(out)
}

// valueJSON encodes one metadata value: numbers as JSON numbers (uint64 and
// int64 exactly, floats in their shortest form), NaN and infinities as the
// strings "NaN", "+Inf", "-Inf", arrays as JSON arrays.
func valueJSON(v gguf.Value) (json.RawMessage, error) {
	var b bytes.Buffer
	if v.Type != gguf.TypeArray {
		if err := appendScalarJSON(&b, v.Data); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
	if a, ok := v.Data.(*gguf.ArrayRef); ok {
		var err error
		if v, err = a.Load(); err != nil {
			return nil, err
		}
	}
	n := v.Len()
	b.WriteByte('[')
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		if err := appendScalarJSON(&b, index(v.Data, i)); err != nil {
			return nil, err
		}
	}
	b.WriteByte(']')
	return b.Bytes(), nil
}

func appendScalarJSON(b *bytes.Buffer, x any) error {
	switch x := x.(type) {
	case string:
		enc := json.NewEncoder(b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(x); err != nil {
			return err
		}
		b.Truncate(b.Len() - 1) // Encode's newline
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case float32:
		appendFloatJSON(b, float64(x), 32)
	case float64:
		appendFloatJSON(b, x, 64)
	case uint8, uint16, uint32, uint64, int8, int16, int32, int64:
		fmt.Fprint(b, x)
	default:
		return fmt.Errorf("unsupported value of Go type %T", x)
	}
	return nil
}

func appendFloatJSON(b *bytes.Buffer, f float64, bits int) {
	switch {
	case math.IsNaN(f):
		b.WriteString(`"NaN"`)
	case math.IsInf(f, 1):
		b.WriteString(`"+Inf"`)
	case math.IsInf(f, -1):
		b.WriteString(`"-Inf"`)
	default:
		b.WriteString(strconv.FormatFloat(f, 'g', -1, bits))
	}
}

// shownText is a key or tensor name as the text form prints it: as it is
// when it is valid UTF-8 without control or other unprintable characters,
// quoted with Go escapes otherwise (llama.cpp accepts any bytes in names,
// and a name must not move the terminal's cursor or colour its output).
func shownText(s string) string {
	if !utf8.ValidString(s) || strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 || s == "" {
		return strconv.Quote(s)
	}
	return s
}

// shownJSON is a key or tensor name as the JSON form gives it: JSON
// escapes control characters itself, but would replace invalid UTF-8 by
// U+FFFD; such a name is given with Go escapes (\xff) instead, unquoted.
func shownJSON(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}
