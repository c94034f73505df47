package cli

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"

	ucli "github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/quantize"
)

func (a *App) dumpCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "dump",
		Usage:     "write one tensor's values to stdout as little-endian float32",
		ArgsUsage: "FILE",
		Description: `Dequantizes the tensor with the same decoders the pruner uses and writes
its elements in storage order (ne[0] fastest) as raw little-endian float32,
reading the tensor in bounded chunks, so memory does not grow with its size.
Refuses to write binary to a terminal unless --force.

Example:
  physarium-gguf dump --tensor blk.0.ffn_down.weight model.gguf > down.f32
  python3 -c "import numpy; print(numpy.fromfile('down.f32', '<f4')[:8])"`,
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "tensor", Usage: "name of the tensor to dump (required)"},
			&ucli.BoolFlag{Name: "force", Usage: "write binary even when stdout is a terminal"},
			splitFlag,
		},
		Action: a.dump,
	}
}

// dumpChunkBytes and dumpChunkValues bound the bytes of the tensor read,
// and the values decoded, at a time.
const (
	dumpChunkBytes  = 1 << 20
	dumpChunkValues = 1 << 18
)

func (a *App) dump(c *ucli.Context) error {
	pos, err := args(c, "FILE")
	if err != nil {
		return err
	}
	name := c.String("tensor")
	if name == "" {
		return usageErrorf("dump: --tensor NAME is required (run '%s dump --help')", Name)
	}
	if isTerminal(a.Stdout) && !c.Bool("force") {
		return usageErrorf("dump: refusing to write binary float32 data to a terminal; redirect stdout or use --force")
	}
	m, err := gguf.OpenModel(pos[0], gguf.ModelOptions{AnyShard: c.Bool("split")})
	if err != nil {
		return fmt.Errorf("dump: %w", err)
	}
	defer m.Close()
	f := m.View
	t, ok := f.Tensor(name)
	if !ok {
		return fmt.Errorf("dump: %s: no tensor named %q", f.Path, name)
	}
	w := bufio.NewWriterSize(a.Stdout, 1<<16)
	if err := dumpTensor(c.Context, w, f, t); err != nil {
		return fmt.Errorf("dump: %s: tensor %s: %w", f.Path, t.Name, err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("dump: %s: tensor %s: %w", f.Path, t.Name, err)
	}
	return nil
}

// dumpTensor writes t's values as little-endian float32 to w, decoding a
// bounded number of blocks at a time.
func dumpTensor(ctx context.Context, w io.Writer, f *gguf.File, t gguf.TensorInfo) error {
	ti, ok := t.Type.Info()
	if !ok {
		return fmt.Errorf("unsupported type %s", t.Type)
	}
	r := f.TensorReader(t)
	if t.Type == gguf.TypeF32 { // already little-endian float32
		_, err := io.Copy(w, io.LimitReader(r, int64(t.Bytes())))
		return err
	}
	if !quantize.CanDecode(t.Type) {
		return fmt.Errorf("unsupported type %s: no decoder for it", t.Type)
	}
	blocks := min(dumpChunkBytes/ti.BlockBytes, dumpChunkValues/ti.BlockSize)
	if blocks < 1 {
		blocks = 1
	}
	src := make([]byte, blocks*ti.BlockBytes)
	vals := make([]float32, blocks*ti.BlockSize)
	out := make([]byte, 4*len(vals))
	for left := int64(t.Bytes()); left > 0; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := int64(len(src))
		if left < n {
			n = left
		}
		if n%int64(ti.BlockBytes) != 0 {
			return fmt.Errorf("%d bytes left: not whole %s blocks", left, t.Type)
		}
		if _, err := io.ReadFull(r, src[:n]); err != nil {
			return err
		}
		nv := int(n) / ti.BlockBytes * ti.BlockSize
		if err := quantize.Decode(t.Type, vals[:nv], src[:n]); err != nil {
			return err
		}
		for i, v := range vals[:nv] {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
		}
		if _, err := w.Write(out[:4*nv]); err != nil {
			return err
		}
		left -= n
	}
	return nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
