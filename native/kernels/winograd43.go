package kernels

// Winograd F(4×4,3×3): each 4×4 block of outputs from the 6×6 input patch around it,
// Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A summed over input channels, as 36 products U[ξ]·V[ξ] on the
// packed GEMM: 36 multiply-adds per 16 outputs and channel pair, against 64 for F(2×2,3×3) and
// 144 for the direct convolution (1.78× fewer than F(2×2,3×3)). Its constants (±2, 4, 5, 8,
// 1/6, 1/24) round more than F(2×2,3×3)'s 0, ±1, ½: winograd43Tol in the tests. Only the
// AVX-512 transforms exist (winograd43In16AVX512, winograd43Out16AVX512, and their variants for
// two tile rows of eight tiles), so Conv2D takes it where a tile row is whole groups of 16 tiles
// (OutW a multiple of 64) or OutW is 32 with an even number of tile rows, and F(2×2,3×3)
// elsewhere.

// winograd43 switches F(4×4,3×3) on; off, every Winograd shape takes F(2×2,3×3) (for A/B).
var winograd43 = true

// winograd43MaxChannels is the largest channel count (in or out) taken to F(4×4,3×3). A band
// of 64 tiles (the least for the GEMM's 6×64 tiles) holds 36·C·64 values of V and as many of M:
// 2.4 MiB at 128 channels, 4.7 MiB at 256, past the 2 MiB L2, where F(4×4,3×3) measured slower
// than F(2×2,3×3) (BenchmarkConv2D, cpu-ms/op: 64ch@256 30.6 → 22, 128ch@128 28.6 → 21.2,
// 256ch@64 25.3 → 30.0) until the products and output transform were blocked over output
// channels (winograd43CoutBlock; 256ch@64 then 33–36 → 28–30 with U transformed per call).
const winograd43MaxChannels = 256

// winograd43WholeCout is the largest Cout whose products one F(4×4,3×3) band computes at once;
// above it they go in blocks of winograd43CoutBlock output channels.
const winograd43WholeCout = 128

// winograd43CoutBlock is the number of output channels whose products and output transform
// one F(4×4,3×3) band computes at a time when Cout exceeds winograd43WholeCout: a multiple of
// gemmMR (so that the block is a run of U's packed strips) whose 36 product matrices over 64
// tiles (553 KiB) stay in L2 beside the band's V, which is streamed once per block.
const winograd43CoutBlock = 60

// useWinograd43 reports whether conv3x3Winograd computes s with F(4×4,3×3).
func useWinograd43(s Conv2DShape) bool {
	ow := s.OutW()
	whole := ow%(4*gemmNR) == 0 || ow == 2*gemmNR && ((s.OutH()+3)/4)%2 == 0
	return winograd43 && useAVX512 && whole && max(s.Cin, s.Cout) <= winograd43MaxChannels
}

// winograd43Pairs reports whether F(4×4,3×3) runs on pairs of tile rows of eight tiles (OutW
// 32): each panel of 16 tiles is then two tile rows (winograd43In8x2AVX512,
// winograd43Out8x2AVX512), and bands hold an even number of tile rows.
func winograd43Pairs(tw int) bool { return tw == gemmNR/2 }

// winograd43Weights is the float64 reference of winogradWeightsGemm for F(4×4,3×3). It writes
// U: 36 matrices (Cout,Cin), U[6k+l][co,ci] = (G g Gᵀ)[k][l] for the 3×3
// kernel g = weight[co,ci], G = [[¼,0,0],[−⅙,−⅙,−⅙],[−⅙,⅙,−⅙],[1/24,1/12,⅙],[1/24,−1/12,⅙],[0,0,1]]
// (computed in float64), each in packA's layout as in winogradWeights.
func winograd43Weights(u, weight []float32, cout, cin int) {
	su := winogradStripLen(cout, cin)
	winogradZeroRows(u, 36, cout, cin)
	g3 := func(a, b, c float64) [6]float64 {
		return [6]float64{a / 4, -(a + b + c) / 6, -(a - b + c) / 6, a/24 + b/12 + c/6, a/24 - b/12 + c/6, c}
	}
	parallelRange(cout*cin, 256, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			co, ci := r/cin, r%cin
			g := weight[r*9:][:9]
			var t [6][3]float64 // G·g
			for j := 0; j < 3; j++ {
				col := g3(float64(g[j]), float64(g[3+j]), float64(g[6+j]))
				for k := range col {
					t[k][j] = col[k]
				}
			}
			o := (co/gemmMR)*gemmMR*cin + ci*gemmMR + co%gemmMR
			for k := 0; k < 6; k++ {
				row := g3(t[k][0], t[k][1], t[k][2])
				for l, x := range row {
					u[(6*k+l)*su+o] = float32(x)
				}
			}
		}
	})
}

// winograd43Scratch is the per-worker scratch of winograd43Input and winograd43Output: twelve
// padded input rows of 4·tw+4 values (two tile rows' six), 576 values for the kernels' rows, and
// eight output rows for a last tile row (or pair) past OutH.
func winograd43Scratch(tw int) int { return 12*(4*tw+4) + 576 + 8*4*tw }

// winograd43Input writes V[ξ][ci, t] = (Bᵀ d B)[ξ] (ξ < 36) for the tiles t of tile rows
// [ty0,ty1) and input channels [ci0,ci1), d the 6×6 input patch at (4ty−PadTop, 4tx−PadLeft),
// zero outside the image, in the panel layout of winogradInput. tw is a multiple of 16, or 8
// with ty1−ty0 even (useWinograd43, winograd43Pairs). Per tile row and channel the six input
// rows are copied zero-padded into scratch, then winograd43In16AVX512 transforms 16 tiles at a
// time (winograd43In8x2AVX512 the eight of two tile rows).
func winograd43Input(v, src []float32, s Conv2DShape, ty0, ty1, tw, ci0, ci1 int, scratch []float32) {
	nt := (ty1 - ty0) * tw
	plane := s.H * s.W
	wp := 4*tw + 4 // the last group of 16 tiles reads 68 columns
	stride := winogradPanelLen(s.Cin, nt)
	r, tmp := scratch[:12*wp], scratch[12*wp:][:576]
	// rows copies the six zero-padded input rows of tile row ty to dst.
	rows := func(dst, img []float32, ty int) {
		for i := 0; i < 6; i++ {
			ri := dst[i*wp:][:wp]
			y := 4*ty - s.PadTop + i
			if y < 0 || y >= s.H {
				clear(ri)
				continue
			}
			// Only the margins need clearing: the copy covers the rest.
			line := img[y*s.W : (y+1)*s.W]
			n := copy(ri[max(0, s.PadLeft):], line[max(0, -s.PadLeft):])
			clear(ri[:max(0, s.PadLeft)])
			clear(ri[max(0, s.PadLeft)+n:])
		}
	}
	if winograd43Pairs(tw) {
		for ty := ty0; ty < ty1; ty += 2 {
			off0 := ((ty - ty0) * tw / gemmNR) * s.Cin * gemmNR
			for ci := ci0; ci < ci1; ci++ {
				img := src[ci*plane : (ci+1)*plane]
				rows(r, img, ty)
				rows(r[6*wp:], img, ty+1)
				off := off0 + ci*gemmNR
				_ = v[off+35*stride+15] // the kernel writes v[off+ξ·stride+j], ξ < 36, j < 16
				winograd43In8x2AVX512(v[off:], stride, r[:6*wp], r[6*wp:12*wp], wp, tmp)
			}
		}
		return
	}
	for ty := ty0; ty < ty1; ty++ {
		t0 := (ty - ty0) * tw
		for ci := ci0; ci < ci1; ci++ {
			rows(r, src[ci*plane:(ci+1)*plane], ty)
			for tx := 0; tx < tw; tx += gemmNR {
				off := (((t0+tx)/gemmNR)*s.Cin + ci) * gemmNR
				_ = v[off+35*stride+15] // the kernel writes v[off+ξ·stride+j], ξ < 36, j < 16
				_ = r[4*tx+5*wp+67]     // and reads r[4tx+i·wp+x], i < 6, x < 68
				winograd43In16AVX512(v[off:], stride, r[4*tx:], wp, tmp)
			}
		}
	}
}

// winograd43Output writes the outputs of tile rows [ty0,ty1): Y = Aᵀ M A + bias, tw a multiple
// of 16 (so OutW = 4·tw); output rows past oh of the last tile row go to scratch and are dropped.
func winograd43Output(dst, m, bias []float32, cout, oh, ow, ty0, ty1, tw int, scratch []float32) {
	nt := (ty1 - ty0) * tw
	stride := winogradOutLen(cout, nt)
	tmp := scratch[12*(4*tw+4):][:576]
	spare := scratch[12*(4*tw+4)+576:][:8*ow]
	if winograd43Pairs(tw) {
		for co := 0; co < cout; co++ {
			bv := channelBias(bias, co)
			plane := dst[co*oh*ow : (co+1)*oh*ow]
			for ty := ty0; ty < ty1; ty += 2 {
				base := co*nt + (ty-ty0)*tw
				y := spare
				whole := 4*ty+8 <= oh
				if whole {
					y = plane[4*ty*ow:][:8*ow]
				}
				_ = m[base+35*stride+15] // the kernel reads m[ξ·stride+j], ξ < 36, j < 16
				winograd43Out8x2AVX512(y[:4*ow], y[4*ow:8*ow], ow, m[base:], stride, bv[:], tmp)
				if !whole {
					copy(plane[4*ty*ow:], y[:(oh-4*ty)*ow])
				}
			}
		}
		return
	}
	for co := 0; co < cout; co++ {
		bv := channelBias(bias, co)
		plane := dst[co*oh*ow : (co+1)*oh*ow]
		for ty := ty0; ty < ty1; ty++ {
			base := co*nt + (ty-ty0)*tw
			y := spare
			whole := 4*ty+4 <= oh
			if whole {
				y = plane[4*ty*ow:][:4*ow]
			}
			for tx := 0; tx < tw; tx += gemmNR {
				_ = m[base+tx+35*stride+15] // the kernel reads m[ξ·stride+j], ξ < 36, j < 16
				_ = y[4*tx+3*ow+63]         // and writes y[4tx+r·ow+x], r < 4, x < 64
				winograd43Out16AVX512(y[4*tx:], ow, m[base+tx:], stride, bv[:], tmp)
			}
			if !whole {
				copy(plane[4*ty*ow:], y[:(oh-4*ty)*ow])
			}
		}
	}
}

// channelBias is bias[co] as the one-value slice the output kernels read (0 when bias is nil).
func channelBias(bias []float32, co int) (bv [1]float32) {
	if bias != nil {
		bv[0] = bias[co]
	}
	return bv
}
