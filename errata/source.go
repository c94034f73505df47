package errata

import "strings"

// SourceSeparator separates the shards of a split input in physarium.source.
const SourceSeparator = ", "

// Source is the value of physarium.source: each input file's base name and
// its sha256 ("name sha256:hex"), for a split input every shard in order,
// separated by SourceSeparator.
func Source(names, sums []string) string {
	parts := make([]string, len(names))
	for i := range names {
		parts[i] = names[i] + " sha256:" + sums[i]
	}
	return strings.Join(parts, SourceSeparator)
}
