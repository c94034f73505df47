// Package kernel decides which weights of a matrix tile die, by letting a
// slime mould (Physarum polycephalum) grow on the tile: each weight is a tube
// between an input and an output node, fed by |w|, and the tubes whose
// flow starves are marked in a mask. New builds a Kernel, Run solves tiles;
// the package knows nothing of GGUF.
//
// # Dynamics
//
// A tile (at most 256 x 256, see MaxDim) is read as a bipartite flow network
// and the Tero–Kobayashi–Nakagaki adaptation runs on it (docs/KERNEL.md).
// Per tile with R output rows and C input columns, food F = |w| (times the
// column's activation scale when given), n = the number of edges (weights
// with non-zero food; zero weights are no tubes, so they neither dilute the
// means below nor count as kills):
//
//	D0 = F * (n / sum F)
//	for t = 1..T:
//	  solve L(D) x = b by K Jacobi-PCG iterations, warm started (x = 0 at t = 1);
//	    b = 1 at every input node, -C/R at every output node (per connected
//	    component; nodes without edges get 0); x is then shifted to zero mean
//	    over the nodes that have edges
//	  q = |D (p_i - u_o)| * (n / sum |D (p_i - u_o)|)
//	  D = (1-h) D + 2h f(q),  f(q) = q^g / (1 + q^g)
//
// # Kill rules
//
// Natural mode kills non-zero weights with D_T < theta * mean(D_T) (mean over
// the n edges), then applies the alive rule: a row (then a column) that has
// non-zero weights but would keep none of them keeps its edge with the
// largest D_T (ties: lowest index); TileStats.Rescued counts those. Sparsity
// mode kills a fixed count per tile: see Sparsity.
//
// # Implementations
//
// Each tile is solved independently, by a pure-Go reference (Generic) or by
// C behind cgo with AVX2+FMA intrinsics (AVX2) or AVX-512 intrinsics
// (AVX512, which runs two rows in the two halves of each 512-bit register);
// all follow one canonical order of floating-point operations (see
// core_go.go) and give bit-identical masks and final conductivities. Auto
// picks AVX512, then AVX2, from the CPU's features. Builds with
// CGO_ENABLED=0 or -tags purego have only Generic.
//
// # Range
//
// The mask depends only on the ratios of the food: scaling the whole tile by
// a power of two changes no bit of the mask or of D_T (the set-up applies
// such a scale itself when the largest food is beyond 2^±64). What float32
// cannot carry is a tile whose food spans too many decades at once, such as
// one weight of 1e25 among weights near 1: the potentials of the flow grow
// like the inverse of the smallest conductivities, and the residual of the
// warm-started solve at t = 2 overflows, so every D_T would be NaN. When a
// tile's flow ends non-finite, Run solves it again on its food clamped to
// [m/2^c, m*2^c], m the median non-zero food, for c = 48, 32, then 16, and
// keeps the first finite result; TileStats.Clamped counts the foods the
// clamp moved. Beyond the clamp an outlier's size no longer changes the mask
// (its tube is a short circuit either way). A tile whose flow is non-finite
// even at c = 16 keeps every weight and has TileStats.Unsolved set, so that
// a caller can warn; no known tile does. The clamp ties the foods it moves,
// so their order among themselves no longer counts.
package kernel
