// Package obs solves the layer-wise reconstruction problem of one weight
// matrix under a pruning mask, by the Optimal Brain Surgeon rule as
// SparseGPT (Frantar & Alistarh 2023) applies it column by column.
//
// A linear layer y = W x with W of rows x cols (ggml's orientation: output
// row o, input column j, columns contiguous) sees calibration inputs whose
// Gram matrix is G = sum_t x_t x_t^T (cols x cols). Removing weights
// changes the layer's output on those inputs by
//
//	E(W') = sum_t |(W - W') x_t|^2 = sum_o (w_o - w'_o)^T G (w_o - w'_o),
//
// one quadratic per row with the same matrix. The solver works with
// H = 2 G / tokens (the scale SparseGPT uses; the scale does not change any
// decision), damped by lambda = damp * mean(diag H), and with U, the upper
// Cholesky factor of H^-1 (H^-1 = U^T U), whose row j holds what the OBS
// update of column j needs once the columns before j are frozen.
//
// Columns are visited left to right in blocks (lazy batch updates): each
// column's removed weights are compensated on the columns to its right,
// never on those already visited. When the mask is fixed beforehand
// (Reconstruct) and every pruned column precedes every kept one, the
// result is the exact least-squares optimum of each row; otherwise it is
// SparseGPT's sequential approximation. Prune also chooses the mask as
// SparseGPT does: per block of columns, the weights with the smallest
// w^2 / U_jj^2 (unstructured), or the N smallest of every M consecutive
// columns of a row (N:M).
//
// All arithmetic is float64.
package obs
