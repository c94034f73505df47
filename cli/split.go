package cli

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/prune"
)

// splitFlag lets a command be given any shard of a split model.
var splitFlag = &ucli.BoolFlag{Name: "split", Usage: "the file may be any shard of a split model (name-NNNNN-of-MMMMM.gguf), not only the first; every shard is read either way"}

// pruneSplitFlags are prune's flags for the output's shards.
func pruneSplitFlags() []ucli.Flag {
	return []ucli.Flag{
		splitFlag,
		&ucli.BoolFlag{Name: "no-split", Usage: "write OUT as one file, whatever the input's shards"},
		&ucli.IntFlag{Name: "split-max-tensors", Usage: "split the output into shards of at most N tensors (as llama-gguf-split)"},
		&ucli.StringFlag{Name: "split-max-size", Usage: "split the output into shards of at most N(M|G) bytes of tensor data, M = 10^6, G = 10^9 (as llama-gguf-split)"},
	}
}

// pruneSplit reads the split flags into o.
func pruneSplit(c *ucli.Context, o *prune.Options) error {
	o.AnyShard = c.Bool("split")
	o.Split.None = c.Bool("no-split")
	if c.IsSet("split-max-tensors") {
		n := c.Int("split-max-tensors")
		if n <= 0 {
			return usageErrorf("prune: --split-max-tensors %d: must be positive", n)
		}
		o.Split.MaxTensors = n
	}
	if s := c.String("split-max-size"); s != "" {
		n, err := parseSplitSize(s)
		if err != nil {
			return usageErrorf("prune: --split-max-size %q: %v", s, err)
		}
		o.Split.MaxBytes = n
	}
	n := 0
	for _, set := range []bool{o.Split.None, o.Split.MaxTensors > 0, o.Split.MaxBytes > 0} {
		if set {
			n++
		}
	}
	if n > 1 {
		return usageErrorf("prune: choose one of --no-split, --split-max-tensors and --split-max-size")
	}
	return nil
}

// parseSplitSize parses llama-gguf-split's N(M|G): N megabytes (10^6 bytes)
// or gigabytes (10^9).
func parseSplitSize(s string) (int64, error) {
	unit := int64(0)
	switch {
	case strings.HasSuffix(s, "M"):
		unit = 1000 * 1000
	case strings.HasSuffix(s, "G"):
		unit = 1000 * 1000 * 1000
	default:
		return 0, errSplitSize
	}
	n, err := strconv.ParseInt(s[:len(s)-1], 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/unit {
		return 0, errSplitSize
	}
	return n * unit, nil
}

var errSplitSize = errors.New("want a positive whole number followed by M (10^6 bytes) or G (10^9 bytes), as in 500M or 4G")

// shardTargets returns the shard names beside out, by llama.cpp's rule
// from out's prefix, that temporary files are named for (NAME.partial-PID),
// so that those left by a killed run of a split output can be removed.
func shardTargets(out string) []string {
	prefix, ok := strings.CutSuffix(out, ".gguf")
	if p, _, _, isShard := gguf.SplitName(out); isShard {
		prefix, ok = p, true
	}
	if !ok || prefix == "" {
		return nil
	}
	dir, base := filepath.Split(prefix)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var targets []string
	for _, e := range entries {
		name, _, found := strings.Cut(e.Name(), ".partial-")
		if !found || !strings.HasPrefix(name, base+"-") || slices.Contains(targets, filepath.Join(dir, name)) {
			continue
		}
		if p, _, _, isShard := gguf.SplitName(filepath.Join(dir, name)); isShard && p == filepath.Join(dir, base) {
			targets = append(targets, filepath.Join(dir, name))
		}
	}
	return targets
}
