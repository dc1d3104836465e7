//go:build purego || !amd64

package kernels

// Stand-ins for the kernels scripts/gen-kernels/vae2.go generates (the direct convolution's
// micro-kernels, the softmax exponentials, GroupNorm's fused affine and SiLU), never called: useAVX512 and useSIMD are false in
// these builds.

func convDirect6x64AVX512(a []float32, offs []int32, x []float32, xo []int, c []float32, co []int, ldc int, bias []float32) {
	panic("kernels: no SIMD")
}

func convDirect5x64AVX512(a []float32, offs []int32, x []float32, xo []int, c []float32, co []int, ldc int, bias []float32) {
	panic("kernels: no SIMD")
}

func convDirect4x64AVX512(a []float32, offs []int32, x []float32, xo []int, c []float32, co []int, ldc int, bias []float32) {
	panic("kernels: no SIMD")
}

func convDirect3x64AVX512(a []float32, offs []int32, x []float32, xo []int, c []float32, co []int, ldc int, bias []float32) {
	panic("kernels: no SIMD")
}

func convDirect2x64AVX512(a []float32, offs []int32, x []float32, xo []int, c []float32, co []int, ldc int, bias []float32) {
	panic("kernels: no SIMD")
}

func convDirect1x64AVX512(a []float32, offs []int32, x []float32, xo []int, c []float32, co []int, ldc int, bias []float32) {
	panic("kernels: no SIMD")
}

func expSubSumAVX2(dst, x []float32, m float32, sum []float32) {
	panic("kernels: no SIMD")
}

func groupNormAffineSiLUAVX512(dst, x, p []float32) {
	panic("kernels: no SIMD")
}
