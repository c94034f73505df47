package calibrate

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/internal/filehash"
)

// modelFiles is the model a run calibrates: the file llama.cpp loads it
// from, its tensors, and the names and sha256s of its files (every shard of
// a split model, in order, joined by errata.SourceSeparator as
// physarium.source joins them).
type modelFiles struct {
	first       string
	view        *gguf.File // tensor infos only: its files are closed
	names, sums string
}

// openModel checks o.Model as gguf.OpenModel does (every shard of a split
// model: names, split keys, headers) and hashes every file.
func openModel(o Options) (*modelFiles, error) {
	m, err := gguf.OpenModel(o.Model, gguf.ModelOptions{AnyShard: o.AnyShard})
	if err != nil {
		return nil, fmt.Errorf("calibrate: %w", err)
	}
	defer m.Close()
	var names, sums []string
	for _, s := range m.Shards {
		sum, err := filehash.SHA256(context.Background(), s.Path)
		if err != nil {
			return nil, fmt.Errorf("calibrate: model %w", err)
		}
		names, sums = append(names, filepath.Base(s.Path)), append(sums, sum)
	}
	return &modelFiles{first: m.Shards[0].Path, view: m.View,
		names: strings.Join(names, errata.SourceSeparator), sums: strings.Join(sums, errata.SourceSeparator)}, nil
}
