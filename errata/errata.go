// Package errata holds the rules both prune and audit follow: the
// physarium.* key table, the denominators every rate names, the errata
// wording, the methods' names and formulas, the 256x256 tiling and its
// bands, the sparsity quotas and the target selection's names.
//
// prune writes a file from these rules and audit checks one against them;
// neither imports the other, so the rules cannot drift between the two.
// docs/ERRATA.md is the prose of the same rules.
package errata

// KeyPrefix starts every metadata key this tool writes.
const KeyPrefix = "physarium."

// TileSize is the side of the kernel's non-overlapping square tiles, and
// the number of rows of a band.
const TileSize = 256

// Tiling is the value of physarium.tiling.
const Tiling = "non-overlapping"
