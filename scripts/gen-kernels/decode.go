package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
)

// prefetch emits the software prefetch of the decode kernels' weight stream, prefetchDist bytes
// ahead (panelDepthLoop, dotRows); decodeF32 changes the distance for the kernels it emits.
var (
	prefetch     = func(m Mem) { PREFETCHT0(m) }
	prefetchDist = gemvPrefetch
)

// dotRowsOne makes dotRows(e, 1) emit dot<E>x1AVX2, the several-weight-rows form of one row of
// A, instead of the one dot product dot<E>AVX2.
var dotRowsOne bool

// decodeF32 emits the float32 decode kernels that main.go's loops do not:
//
//   - dotF32x1AVX2: the LM head of one row through a whole chunk of wte rows in one call (per
//     row the operations of dotF32AVX2, so the bits are the same), where the one-row path
//     called dotF32AVX2 once per vocabulary entry (50257 calls per token).
//   - gemvPanelF32PF2KAVX2 and dotF32PF2Kx1AVX2: gemvPanelF32AVX2 and dotF32x1AVX2 prefetching
//     2 KiB ahead instead of gemvPrefetch (1 KiB), what batch-1 float32 decode uses. In
//     alternated runs of BenchmarkDecode (5 rounds, load 9-11) they took 58.2 CPU-ms per token
//     against 59.8 at 1 KiB and 59.7 at 4 KiB; PREFETCHNTA 1 KiB ahead took 100-106 (lines
//     fetched for L1 only are gone before the stream reaches them).
func decodeF32() {
	f32 := elems[0]
	dotRowsOne = true
	dotRows(f32, 1)
	prefetchDist = 2048
	e := f32
	e.suffix = "F32PF2K"
	gemvPanelRows(e, 1)
	dotRows(e, 1)
	prefetchDist = gemvPrefetch
	dotRowsOne = false
}
