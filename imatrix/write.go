package imatrix

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"

	"github.com/physarium/physarium-gguf/gguf"
)

// WriteGGUF writes m in llama-imatrix's GGUF format: general.type =
// imatrix, imatrix.datasets, imatrix.chunk_count and imatrix.chunk_size,
// then, entry by entry in name order, the F32 tensors <name>.in_sum2
// (len(Sums)/len(Counts) values per matrix, len(Counts) matrices) and
// <name>.counts (one per matrix). Load reads the file back to the same
// scales; a legacy entry's sums, (sum/count)*ncall over ncall, give them too.
func (m *Matrix) WriteGGUF(path string, opts gguf.CreateOptions) error {
	names := make([]string, 0, len(m.Entries))
	for n := range m.Entries {
		names = append(names, n)
	}
	sort.Strings(names)
	h := gguf.Header{Version: 3, KVs: []gguf.KV{
		{Key: "general.type", Value: gguf.String("imatrix")},
		{Key: "imatrix.datasets", Value: gguf.Strings(append([]string{}, m.Datasets...))},
		{Key: "imatrix.chunk_count", Value: gguf.Uint32(uint32(m.ChunkCount))},
		{Key: "imatrix.chunk_size", Value: gguf.Uint32(uint32(m.ChunkSize))},
	}}
	for _, n := range names {
		e := m.Entries[n]
		mats := len(e.Counts)
		if mats == 0 || len(e.Sums)%mats != 0 {
			return fmt.Errorf("imatrix: %s: entry %s: %d sums do not split into %d matrices", path, n, len(e.Sums), mats)
		}
		h.Tensors = append(h.Tensors,
			gguf.TensorInfo{Name: n + sumSuffix, Type: gguf.TypeF32, Shape: []uint64{uint64(len(e.Sums) / mats), uint64(mats)}},
			gguf.TensorInfo{Name: n + countSuffix, Type: gguf.TypeF32, Shape: []uint64{1, uint64(mats)}})
	}
	w, err := gguf.Create(path, h, opts)
	if err != nil {
		return fmt.Errorf("imatrix: %w", err)
	}
	for _, n := range names {
		e := m.Entries[n]
		counts := make([]float32, len(e.Counts))
		for i, c := range e.Counts {
			counts[i] = float32(c)
		}
		for _, vals := range [][]float32{e.Sums, counts} {
			b := make([]byte, 0, 4*len(vals))
			for _, v := range vals {
				b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
			}
			if _, err := w.Write(b); err != nil {
				w.Abort()
				return fmt.Errorf("imatrix: %w", err)
			}
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("imatrix: %w", err)
	}
	return nil
}
