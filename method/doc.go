// Package method holds the ways of deciding which weights die: one type
// per method, one file per method, found by name in a registry. prune
// decides a tensor band by band through a method's Decider and writes its
// labels (physarium.version, method, activation_aware, importance); audit
// checks those labels, counts kills by the method's Rule and replays the
// methods that say they can be replayed. Neither switches on a method's
// name; both import this package, which imports errata and kernel and
// never prune or audit.
//
// The methods: magnitude-flow (Physarium v1: the mould eats |w|),
// activation-flow (v2: the mould eats |w|*a_i, with a_i from an importance
// matrix; in sparsity mode a Rank chooses the kills), the two plain
// baselines that run no kernel, magnitude and wanda, and sparsegpt, which
// reads a calibration file (Config.Calibration) and rewrites survivors
// (a Reconstructor). Reconstructing wraps any method: its mask, then the
// survivors reconstructed under it.
//
// A new method is a new file that registers a type implementing Method;
// prune, cli and audit find it by name and need no change. The interface
// leaves room for the methods it does not yet hold:
//
//   - A method that needs a calibration file of its own (say a Gram matrix
//     of the layer inputs, as SparseGPT does) loads and factors it in
//     Prepare (the Preparer interface), which sees each target tensor
//     whole before its bands are decided and returns the per-tensor state
//     that every Band of that tensor carries in State. The file's path
//     would travel in Config beside the kernel constants.
//   - A method that changes the survivors as well as the mask
//     (reconstruction, for any mask) would implement a second optional
//     interface beside Decider, handed the band's values and mask after
//     Decide to rewrite the survivors in place; prune's surgery already
//     re-encodes every block that holds a kill, and would re-encode the
//     blocks whose values changed as well.
//   - A method that decides per group of M consecutive weights (an N:M
//     pattern) decides inside Decide as the row-ranked methods do, and
//     states its count rule as a new Rule type in its own file; the
//     audit's zero counts per 256-column segment would then need a finer
//     grain (per group) for Rule.Kills to recount it.
package method
