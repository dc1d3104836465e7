//go:build purego || !amd64

package kernels

// Stand-ins for the F(4×4,3×3) transforms, never called: useAVX512 is false in these builds.

func winograd43In16AVX512(v []float32, stride int, r []float32, ld int, tmp []float32) {
	panic("kernels: no SIMD")
}

func winograd43Out16AVX512(y []float32, ldy int, m []float32, stride int, bias []float32, tmp []float32) {
	panic("kernels: no SIMD")
}

func winograd43In8x2AVX512(v []float32, stride int, r0, r1 []float32, ld int, tmp []float32) {
	panic("kernels: no SIMD")
}

func winograd43Out8x2AVX512(y0, y1 []float32, ldy int, m []float32, stride int, bias []float32, tmp []float32) {
	panic("kernels: no SIMD")
}
