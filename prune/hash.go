package prune

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"time"

	"github.com/physarium/physarium-gguf/gguf"
)

// inputHash computes a file's sha256 in file order. For the input
// (physarium.source) it takes the bytes the run reads anyway: the producer
// hands it every piece of tensor data as it reads it, and inputHash reads
// only what lies between (the header, padding). That needs the tensors'
// data in increasing offset order without overlap; inOrder says whether
// they are, and File falls back to hashFile, a separate pass, when not.
type inputHash struct {
	r    io.ReaderAt
	size int64
	path string // for errors
	h    hash.Hash
	pos  int64 // bytes hashed so far
	buf  []byte
}

func newInputHash(f *gguf.File) *inputHash {
	return &inputHash{r: f, size: f.Size, path: f.Path, h: sha256.New()}
}

// inOrder reports whether the tensors' data lie in file order, without
// overlap, so that hashing band by band in plan order covers the file once.
func inOrder(f *gguf.File) bool {
	end := uint64(0)
	for _, t := range f.Tensors {
		if t.Offset < end {
			return false
		}
		end = t.Offset + t.Bytes()
	}
	return true
}

// upTo hashes the file from the current position to off, reading it.
func (ih *inputHash) upTo(ctx context.Context, off int64) error {
	if ih.buf == nil && off > ih.pos {
		ih.buf = make([]byte, 1<<20)
	}
	for ih.pos < off {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(int64(len(ih.buf)), off-ih.pos)
		if _, err := ih.r.ReadAt(ih.buf[:n], ih.pos); err != nil {
			return fmt.Errorf("prune: %s: %w", ih.path, err)
		}
		ih.h.Write(ih.buf[:n])
		ih.pos += n
	}
	return nil
}

// add hashes b, the bytes of the file at off, after what lies before it.
func (ih *inputHash) add(ctx context.Context, b []byte, off int64) error {
	if err := ih.upTo(ctx, off); err != nil {
		return err
	}
	ih.h.Write(b)
	ih.pos += int64(len(b))
	return nil
}

// sum hashes the rest of the file and returns the hex digest.
func (ih *inputHash) sum(ctx context.Context) (string, error) {
	if err := ih.upTo(ctx, ih.size); err != nil {
		return "", err
	}
	return hex.EncodeToString(ih.h.Sum(nil)), nil
}

type hashResult struct {
	sum string
	cpu time.Duration // the CPU time of the pass
	err error
}

// hashFile computes the input's sha256 in a pass of its own, concurrently
// with the surgery (for files whose tensors are not in file order).
func hashFile(ctx context.Context, f *gguf.File) <-chan hashResult {
	ch := make(chan hashResult, 1)
	go func() {
		var res hashResult
		res.err = timed(&res.cpu, func() (err error) {
			res.sum, err = newInputHash(f).sum(ctx)
			return err
		})
		ch <- res
	}()
	return ch
}

// fileSHA256 returns the hex sha256 of the file at path.
func fileSHA256(ctx context.Context, path string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("prune: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return "", fmt.Errorf("prune: %w", err)
	}
	return (&inputHash{r: fh, size: st.Size(), path: path, h: sha256.New()}).sum(ctx)
}
