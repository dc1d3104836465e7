package kernels

import (
	"fmt"
	"math"
)

// SiLUNaive is the reference SiLU (swish), in float64: out[i] = x / (1 + exp(−x)), x = inp[i].
// out may alias inp; it panics when the lengths differ.
func SiLUNaive(out, inp []float32) {
	if len(out) != len(inp) {
		panic(fmt.Sprintf("kernels: silu output has %d values, input %d", len(out), len(inp)))
	}
	for i, x := range inp {
		out[i] = float32(float64(x) / (1 + math.Exp(-float64(x))))
	}
}

// SiLU computes the same function as SiLUNaive, spread over GOMAXPROCS goroutines.
func SiLU(out, inp []float32) {
	if len(out) != len(inp) {
		panic(fmt.Sprintf("kernels: silu output has %d values, input %d", len(out), len(inp)))
	}
	parallelRange(len(inp), 16, func(lo, hi int) { siluSpan(out[lo:hi], inp[lo:hi]) })
}

// siluSpan is out[i] = silu(inp[i]): eight lanes at a time in AVX2 (a float32 polynomial exp,
// about 1 ulp) when useSIMD, the rest through silu32. out may alias inp.
func siluSpan(out, inp []float32) {
	out = out[:len(inp)]
	n8 := 0
	if useSIMD {
		if n8 = len(inp) &^ 7; n8 > 0 {
			siluAVX2(out[:n8], inp[:n8])
		}
	}
	for i := n8; i < len(inp); i++ {
		out[i] = silu32(inp[i])
	}
}

// silu32 is x·σ(x) with the exponential in float64: float32 rounding of exp alone would cost
// about 1e-7 relative error, well inside every tolerance, but float64 keeps SiLU and its naive
// reference bit-identical on most inputs.
func silu32(x float32) float32 {
	return float32(float64(x) / (1 + math.Exp(-float64(x))))
}
