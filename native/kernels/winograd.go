package kernels

import "sync"

// Winograd F(2×2,3×3) for 3×3 stride-1 convolutions (Lavin & Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2015): each 2×2 block of outputs ("tile") is computed from the
// 4×4 input patch around it as Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A, summed over input channels. The
// sum over channels of the 16 element-wise products is 16 matrix products
//
//	M[ξ] (Cout × tiles) = U[ξ] (Cout × Cin) · V[ξ] (Cin × tiles),  ξ = 0..15
//
// on the packed GEMM: 16 multiply-adds per tile and channel pair where the direct convolution
// needs 36 (2.25× fewer), for three cheap transforms. The transforms' constants are 0, ±1 and
// ½, so F(2×2,3×3) loses little accuracy (winogradTol in the tests).

// winogradBudget bounds each of the transformed-input and product buffers (float32 values,
// 16 MiB): images are processed in bands of tile rows.
const winogradBudget = 1 << 22

// winogradMinChannels is the channel count from which Conv2D takes the Winograd path: its
// products have K = Cin, and below this the GEMM's packing outweighs the saved multiplies.
const winogradMinChannels = 16

var winogradPool = sync.Pool{New: func() any { return new([]float32) }}

// useWinograd reports whether Conv2D computes s with conv3x3Winograd.
func useWinograd(s Conv2DShape) bool {
	return s.KH == 3 && s.KW == 3 && s.Stride == 1 && s.Cin >= winogradMinChannels && s.Cout >= winogradMinChannels && useSIMD
}

// winogradWeights returns U: 16 matrices (Cout,Cin), U[ξ][co,ci] = (G g Gᵀ)[ξ] for the 3×3
// kernel g = weight[co,ci], with G = [[1,0,0],[½,½,½],[½,−½,½],[0,0,1]].
func winogradWeights(u, weight []float32, cout, cin int) {
	n := cout * cin
	parallelRange(n, 64, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			g := weight[r*9:][:9]
			var t [4][3]float32 // G·g
			for j := 0; j < 3; j++ {
				g0, g1, g2 := g[j], g[3+j], g[6+j]
				t[0][j], t[1][j], t[2][j], t[3][j] = g0, (g0+g1+g2)*0.5, (g0-g1+g2)*0.5, g2
			}
			for i := 0; i < 4; i++ {
				a, b, c := t[i][0], t[i][1], t[i][2]
				u[(i*4+0)*n+r] = a
				u[(i*4+1)*n+r] = (a + b + c) * 0.5
				u[(i*4+2)*n+r] = (a - b + c) * 0.5
				u[(i*4+3)*n+r] = c
			}
		}
	})
}

// conv3x3Winograd computes Conv2D for a 3×3 stride-1 shape (any zero padding).
func conv3x3Winograd(out, inp, weight, bias []float32, s Conv2DShape) {
	oh, ow := s.OutH(), s.OutW()
	th, tw := (oh+1)/2, (ow+1)/2
	cmax := max(s.Cin, s.Cout)
	bandRows := max(1, min(th, winogradBudget/(16*cmax*tw)))
	pu := winogradPool.Get().(*[]float32)
	pv := winogradPool.Get().(*[]float32)
	pm := winogradPool.Get().(*[]float32)
	defer func() { winogradPool.Put(pu); winogradPool.Put(pv); winogradPool.Put(pm) }()
	u := growTo(pu, 16*s.Cout*s.Cin)
	v := growTo(pv, 16*s.Cin*bandRows*tw)
	m := growTo(pm, 16*s.Cout*bandRows*tw)
	winogradWeights(u, weight, s.Cout, s.Cin)
	for b := 0; b < s.B; b++ {
		src := inp[b*s.Cin*s.H*s.W : (b+1)*s.Cin*s.H*s.W]
		dst := out[b*s.Cout*oh*ow : (b+1)*s.Cout*oh*ow]
		for ty0 := 0; ty0 < th; ty0 += bandRows {
			ty1 := min(th, ty0+bandRows)
			nt := (ty1 - ty0) * tw
			winogradInput(v[:16*s.Cin*nt], src, s, ty0, ty1, tw)
			for x := 0; x < 16; x++ {
				Gemm(s.Cout, nt, s.Cin, u[x*s.Cout*s.Cin:], s.Cin, v[x*s.Cin*nt:], nt, m[x*s.Cout*nt:], nt, nil)
			}
			winogradOutput(dst, m[:16*s.Cout*nt], bias, s.Cout, oh, ow, ty0, ty1, tw)
		}
	}
}

func growTo(p *[]float32, n int) []float32 {
	if cap(*p) < n {
		*p = make([]float32, n)
	}
	return (*p)[:n]
}

// winogradInput writes V[ξ][ci, t] = (Bᵀ d B)[ξ] for the tiles t of tile rows [ty0,ty1) (t
// counted from ty0's first), d being the 4×4 input patch at (2ty−PadTop, 2tx−PadLeft), zero
// outside the image; Bᵀ = [[1,0,−1,0],[0,1,1,0],[0,−1,1,0],[0,1,0,−1]]. Per tile row it applies
// Bᵀ down the four zero-padded input rows once for the whole width (neighbouring tiles share two
// columns), then B across each tile.
func winogradInput(v, src []float32, s Conv2DShape, ty0, ty1, tw int) {
	nt := (ty1 - ty0) * tw
	plane := s.H * s.W
	wp := 2*tw + 2 // padded width the tiles of a row read
	stride := s.Cin * nt
	parallelRange(s.Cin, nt*16, func(lo, hi int) {
		buf := make([]float32, 8*wp)
		var r, c [4][]float32
		for i := range r {
			r[i], c[i] = buf[i*wp:][:wp], buf[(4+i)*wp:][:wp]
		}
		for ci := lo; ci < hi; ci++ {
			img := src[ci*plane : (ci+1)*plane]
			for ty := ty0; ty < ty1; ty++ {
				for i := range r {
					clear(r[i])
					if y := 2*ty - s.PadTop + i; y >= 0 && y < s.H {
						line := img[y*s.W : (y+1)*s.W]
						// r[i][xx] = line[xx − PadLeft] where both exist.
						x0 := max(0, s.PadLeft)
						copy(r[i][x0:], line[max(0, -s.PadLeft):])
					}
				}
				r0, r1, r2, r3 := r[0], r[1][:wp], r[2][:wp], r[3][:wp]
				c0, c1, c2, c3 := c[0][:wp], c[1][:wp], c[2][:wp], c[3][:wp]
				for x := range r0 {
					c0[x], c1[x], c2[x], c3[x] = r0[x]-r2[x], r1[x]+r2[x], r2[x]-r1[x], r1[x]-r3[x]
				}
				base := ci*nt + (ty-ty0)*tw
				for k := 0; k < 4; k++ {
					ck := c[k][:wp]
					o0 := v[(k*4+0)*stride+base:][:tw]
					o1 := v[(k*4+1)*stride+base:][:tw]
					o2 := v[(k*4+2)*stride+base:][:tw]
					o3 := v[(k*4+3)*stride+base:][:tw]
					for tx := range o0 {
						q := (*[4]float32)(ck[2*tx:])
						o0[tx] = q[0] - q[2]
						o1[tx] = q[1] + q[2]
						o2[tx] = q[2] - q[1]
						o3[tx] = q[1] - q[3]
					}
				}
			}
		}
	})
}

// winogradOutput writes the outputs of tile rows [ty0,ty1): Y = Aᵀ M A + bias with
// Aᵀ = [[1,1,1,0],[0,1,−1,−1]], dropping the outputs past (oh,ow) of the last tiles.
func winogradOutput(dst, m, bias []float32, cout, oh, ow, ty0, ty1, tw int) {
	nt := (ty1 - ty0) * tw
	stride := cout * nt
	parallelRange(cout, nt*16, func(lo, hi int) {
		rows := make([]float32, 2*2*tw)
		for co := lo; co < hi; co++ {
			var bv float32
			if bias != nil {
				bv = bias[co]
			}
			plane := dst[co*oh*ow : (co+1)*oh*ow]
			for ty := ty0; ty < ty1; ty++ {
				base := co*nt + (ty-ty0)*tw
				y0 := rows[:2*tw]
				y1 := rows[2*tw:][:2*tw]
				direct := 2*ty+1 < oh && ow == 2*tw // both output rows whole: write in place
				if direct {
					y0, y1 = plane[2*ty*ow:][:ow], plane[(2*ty+1)*ow:][:ow]
				}
				sl := func(x int) []float32 { return m[x*stride+base:][:tw] }
				m00, m01, m02, m03 := sl(0), sl(1), sl(2), sl(3)
				m10, m11, m12, m13 := sl(4), sl(5), sl(6), sl(7)
				m20, m21, m22, m23 := sl(8), sl(9), sl(10), sl(11)
				m30, m31, m32, m33 := sl(12), sl(13), sl(14), sl(15)
				for tx := range m00 {
					// Aᵀ·M: rows a (top output row) and b (bottom), four columns each.
					a0, b0 := m00[tx]+m10[tx]+m20[tx], m10[tx]-m20[tx]-m30[tx]
					a1, b1 := m01[tx]+m11[tx]+m21[tx], m11[tx]-m21[tx]-m31[tx]
					a2, b2 := m02[tx]+m12[tx]+m22[tx], m12[tx]-m22[tx]-m32[tx]
					a3, b3 := m03[tx]+m13[tx]+m23[tx], m13[tx]-m23[tx]-m33[tx]
					t0, t1 := (*[2]float32)(y0[2*tx:]), (*[2]float32)(y1[2*tx:])
					t0[0], t0[1] = a0+a1+a2+bv, a1-a2-a3+bv
					t1[0], t1[1] = b0+b1+b2+bv, b1-b2-b3+bv
				}
				if direct {
					continue
				}
				if y := 2 * ty; y < oh {
					copy(plane[y*ow:(y+1)*ow], y0)
				}
				if y := 2*ty + 1; y < oh {
					copy(plane[y*ow:(y+1)*ow], y1)
				}
			}
		}
	})
}
