//go:build !amd64 || purego

package kernels

// Stand-ins for the float32 decode kernels of scripts/gen-kernels/decode.go (never called).

func dotF32x1AVX2(s []float32, lds int, a []float32, lda int, w []float32, ldw, n, rows int) {
	panic("kernels: no SIMD")
}
func gemvPanelF32PF2KAVX2(y, a, w []float32) { panic("kernels: no SIMD") }
func dotF32PF2Kx1AVX2(s []float32, lds int, a []float32, lda int, w []float32, ldw, n, rows int) {
	panic("kernels: no SIMD")
}
