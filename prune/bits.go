package prune

// grow returns s with length n, reallocated only when too small.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// byteNonZero maps each byte of x to 0x80 when it is not zero, else 0.
func byteNonZero(x uint64) uint64 {
	const low7, high = 0x7f7f7f7f_7f7f7f7f, 0x80808080_80808080
	return ((x & low7) + low7 | x) & high
}

// b2u is 1 for true and 0 for false, without a branch.
func b2u(b bool) uint32 {
	var u uint32
	if b {
		u = 1
	}
	return u
}
