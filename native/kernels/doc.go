// Package kernels holds the numeric operators of the native backend as flat functions over
// row-major []float32 slices: one function per op, shapes and formula in its doc comment, the
// result written into a destination the caller provides.
//
// Every fast kernel has a naive reference beside it (suffix Naive, usually accumulating in
// float64) that the tests hold it to on odd sizes. Fast kernels are blocked for the cache and
// run on a small fixed pool of worker goroutines (one per GOMAXPROCS at first use); in steady
// state they allocate nothing, so a decode step costs no garbage. Parallel kernels serialize on
// the pool: call them from any goroutine, but never from inside another kernel's work.
//
// Shape mismatches are programming errors and panic, as in gonum; nothing here depends on data
// in a way that can fail.
package kernels
