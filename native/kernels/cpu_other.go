//go:build !amd64 || purego

package kernels

// Without amd64 assembly (another architecture, or the purego tag) the SIMD kernels do not exist:
// these stand-ins keep the package compiling and are never called, because useSIMD is false.
var haveAVX2, haveF16C, haveAVX512, haveVNNI = false, false, false, false

func gemm6x16AVX2(a, b, c []float32, ldc int)                     { panic("kernels: no SIMD") }
func axpyPanelF32AVX2(c, a []float32, w []float32, ldw int)       { panic("kernels: no SIMD") }
func axpyPanelI8AVX2(c, a []float32, w []int8, ldw int)           { panic("kernels: no SIMD") }
func axpyPanelF16AVX2(c, a []float32, w []uint16, ldw int)        { panic("kernels: no SIMD") }
func dotF32AVX2(a []float32, w []float32) float32                 { panic("kernels: no SIMD") }
func dotI8AVX2(a []float32, w []int8) float32                     { panic("kernels: no SIMD") }
func dotF16AVX2(a []float32, w []uint16) float32                  { panic("kernels: no SIMD") }
func widenI8AVX2(dst []float32, q []int8, scale []float32)        { panic("kernels: no SIMD") }
func widenF16AVX2(dst []float32, h []uint16)                      { panic("kernels: no SIMD") }
func siluAVX2(dst, x []float32)                                   { panic("kernels: no SIMD") }
func geluAVX2(dst, x []float32)                                   { panic("kernels: no SIMD") }
func gemvPanelF32AVX2(y, a []float32, w []float32)                { panic("kernels: no SIMD") }
func gemvPanelI8AVX2(y, a []float32, w []int8)                    { panic("kernels: no SIMD") }
func gemvPanelF16AVX2(y, a []float32, w []uint16)                 { panic("kernels: no SIMD") }
func gemm6x16InitAVX2(a, b, c []float32, ldc int, init []float32) { panic("kernels: no SIMD") }
func gemm6x64AVX512(a, b []float32, bs int, c []float32, ldc int) { panic("kernels: no SIMD") }
func gemm6x64InitAVX512(a, b []float32, bs int, c []float32, ldc int, init []float32) {
	panic("kernels: no SIMD")
}
func gemvPanelF32x2AVX2(y, a []float32, lda int, w []float32) { panic("kernels: no SIMD") }
func gemvPanelF32x3AVX2(y, a []float32, lda int, w []float32) { panic("kernels: no SIMD") }
func gemvPanelI8x2AVX2(y, a []float32, lda int, w []int8)     { panic("kernels: no SIMD") }
func gemvPanelI8x3AVX2(y, a []float32, lda int, w []int8)     { panic("kernels: no SIMD") }
func gemvPanelF16x2AVX2(y, a []float32, lda int, w []uint16)  { panic("kernels: no SIMD") }
func gemvPanelF16x3AVX2(y, a []float32, lda int, w []uint16)  { panic("kernels: no SIMD") }
func dotF32x2AVX2(s []float32, lds int, a []float32, lda int, w []float32, ldw, n, rows int) {
	panic("kernels: no SIMD")
}
func dotF32x3AVX2(s []float32, lds int, a []float32, lda int, w []float32, ldw, n, rows int) {
	panic("kernels: no SIMD")
}
func dotI8x2AVX2(s []float32, lds int, a []float32, lda int, w []int8, ldw, n, rows int) {
	panic("kernels: no SIMD")
}
func dotI8x3AVX2(s []float32, lds int, a []float32, lda int, w []int8, ldw, n, rows int) {
	panic("kernels: no SIMD")
}
func dotF16x2AVX2(s []float32, lds int, a []float32, lda int, w []uint16, ldw, n, rows int) {
	panic("kernels: no SIMD")
}
func dotF16x3AVX2(s []float32, lds int, a []float32, lda int, w []uint16, ldw, n, rows int) {
	panic("kernels: no SIMD")
}
func winogradIn16AVX512(v []float32, stride int, r []float32, ld int) { panic("kernels: no SIMD") }
func winogradOut16AVX512(y0, y1, m []float32, stride int, bias []float32) {
	panic("kernels: no SIMD")
}
func sumF64AVX2(x []float32) float64                            { panic("kernels: no SIMD") }
func sumSqDevF64AVX2(x []float32, mean float64) float64         { panic("kernels: no SIMD") }
func groupNormAffineAVX2(dst, x, p []float32)                   { panic("kernels: no SIMD") }
func gemvPanelF32x4AVX512(y, a []float32, lda int, w []float32) { panic("kernels: no SIMD") }
func gemvPanelF32x5AVX512(y, a []float32, lda int, w []float32) { panic("kernels: no SIMD") }
func gemvPanelF32x6AVX512(y, a []float32, lda int, w []float32) { panic("kernels: no SIMD") }
func gemvPanelF32x7AVX512(y, a []float32, lda int, w []float32) { panic("kernels: no SIMD") }
func gemvPanelF32x8AVX512(y, a []float32, lda int, w []float32) { panic("kernels: no SIMD") }
func gemvPanelI8x4AVX512(y, a []float32, lda int, w []int8)     { panic("kernels: no SIMD") }
func gemvPanelI8x5AVX512(y, a []float32, lda int, w []int8)     { panic("kernels: no SIMD") }
func gemvPanelI8x6AVX512(y, a []float32, lda int, w []int8)     { panic("kernels: no SIMD") }
func gemvPanelI8x7AVX512(y, a []float32, lda int, w []int8)     { panic("kernels: no SIMD") }
func gemvPanelI8x8AVX512(y, a []float32, lda int, w []int8)     { panic("kernels: no SIMD") }
func gemvPanelF16x4AVX512(y, a []float32, lda int, w []uint16)  { panic("kernels: no SIMD") }
func gemvPanelF16x5AVX512(y, a []float32, lda int, w []uint16)  { panic("kernels: no SIMD") }
func gemvPanelF16x6AVX512(y, a []float32, lda int, w []uint16)  { panic("kernels: no SIMD") }
func gemvPanelF16x7AVX512(y, a []float32, lda int, w []uint16)  { panic("kernels: no SIMD") }
func gemvPanelF16x8AVX512(y, a []float32, lda int, w []uint16)  { panic("kernels: no SIMD") }
func gemm1x64PfAVX512(a, b []float32, bs int, c []float32, ldc int, init, pf []float32, npf int) {
	panic("kernels: no SIMD")
}
func gemm2x64PfAVX512(a, b []float32, bs int, c []float32, ldc int, init, pf []float32, npf int) {
	panic("kernels: no SIMD")
}
func gemm3x64PfAVX512(a, b []float32, bs int, c []float32, ldc int, init, pf []float32, npf int) {
	panic("kernels: no SIMD")
}
func gemm4x64PfAVX512(a, b []float32, bs int, c []float32, ldc int, init, pf []float32, npf int) {
	panic("kernels: no SIMD")
}
func gemm5x64PfAVX512(a, b []float32, bs int, c []float32, ldc int, init, pf []float32, npf int) {
	panic("kernels: no SIMD")
}
func gemm6x64PfAVX512(a, b []float32, bs int, c []float32, ldc int, init, pf []float32, npf int) {
	panic("kernels: no SIMD")
}
func geluAVX512(dst, x []float32) { panic("kernels: no SIMD") }

func gemvPanelQ8x1VNNI(y []float32, qa []byte, lda int, w []int8, blocks, steps int, mask uint64) {
	panic("kernels: no SIMD")
}
func gemvPanelQ8x2VNNI(y []float32, qa []byte, lda int, w []int8, blocks, steps int, mask uint64) {
	panic("kernels: no SIMD")
}
func gemvPanelQ8x3VNNI(y []float32, qa []byte, lda int, w []int8, blocks, steps int, mask uint64) {
	panic("kernels: no SIMD")
}
func gemvPanelQ8x4VNNI(y []float32, qa []byte, lda int, w []int8, blocks, steps int, mask uint64) {
	panic("kernels: no SIMD")
}
func gemvPanelQ8x5VNNI(y []float32, qa []byte, lda int, w []int8, blocks, steps int, mask uint64) {
	panic("kernels: no SIMD")
}
func gemvPanelQ8x6VNNI(y []float32, qa []byte, lda int, w []int8, blocks, steps int, mask uint64) {
	panic("kernels: no SIMD")
}
func gemvPanelQ8x7VNNI(y []float32, qa []byte, lda int, w []int8, blocks, steps int, mask uint64) {
	panic("kernels: no SIMD")
}
func gemvPanelQ8x8VNNI(y []float32, qa []byte, lda int, w []int8, blocks, steps int, mask uint64) {
	panic("kernels: no SIMD")
}
func quantizeQ8AVX512(dst []byte, a []float32, blocks int) { panic("kernels: no SIMD") }
func dotQ8x1VNNI(y []float32, qa []byte, lda int, w []int8, ldw, n, groups int, mask uint64) {
	panic("kernels: no SIMD")
}
func dotQ8x2VNNI(y []float32, qa []byte, lda int, w []int8, ldw, n, groups int, mask uint64) {
	panic("kernels: no SIMD")
}
func dotQ8x3VNNI(y []float32, qa []byte, lda int, w []int8, ldw, n, groups int, mask uint64) {
	panic("kernels: no SIMD")
}
func dotQ8x4VNNI(y []float32, qa []byte, lda int, w []int8, ldw, n, groups int, mask uint64) {
	panic("kernels: no SIMD")
}
func expScaledSumAVX512(x []float32, n int, s, m float32) float32 { panic("kernels: no SIMD") }
func layerNormAffineAVX512(dst, x, gamma, beta []float32, p []float64) {
	panic("kernels: no SIMD")
}
func packA6AVX512(blk, a []float32, lda, rows int) { panic("kernels: no SIMD") }
func gemmQ8x1VNNI(c []float32, ldc int, qa []byte, lda int, w []int8, blocks, steps int, mask uint64, scale, bias []float32, cmask uint64) {
	panic("kernels: no SIMD")
}
func gemmQ8x2VNNI(c []float32, ldc int, qa []byte, lda int, w []int8, blocks, steps int, mask uint64, scale, bias []float32, cmask uint64) {
	panic("kernels: no SIMD")
}
func gemmQ8x3VNNI(c []float32, ldc int, qa []byte, lda int, w []int8, blocks, steps int, mask uint64, scale, bias []float32, cmask uint64) {
	panic("kernels: no SIMD")
}
func gemmQ8x4VNNI(c []float32, ldc int, qa []byte, lda int, w []int8, blocks, steps int, mask uint64, scale, bias []float32, cmask uint64) {
	panic("kernels: no SIMD")
}
func gemmQ8x5VNNI(c []float32, ldc int, qa []byte, lda int, w []int8, blocks, steps int, mask uint64, scale, bias []float32, cmask uint64) {
	panic("kernels: no SIMD")
}
func gemmQ8x6VNNI(c []float32, ldc int, qa []byte, lda int, w []int8, blocks, steps int, mask uint64, scale, bias []float32, cmask uint64) {
	panic("kernels: no SIMD")
}
func gemmQ8x7VNNI(c []float32, ldc int, qa []byte, lda int, w []int8, blocks, steps int, mask uint64, scale, bias []float32, cmask uint64) {
	panic("kernels: no SIMD")
}
func gemmQ8x8VNNI(c []float32, ldc int, qa []byte, lda int, w []int8, blocks, steps int, mask uint64, scale, bias []float32, cmask uint64) {
	panic("kernels: no SIMD")
}
