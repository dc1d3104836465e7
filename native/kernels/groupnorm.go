package kernels

import (
	"fmt"
	"math"
)

func checkGroupNorm(out, inp, gamma, beta []float32, b, c, hw, g int) {
	switch {
	case b <= 0 || c <= 0 || hw <= 0 || g <= 0 || c%g != 0:
		panic(fmt.Sprintf("kernels: bad group norm shape B=%d C=%d HW=%d G=%d", b, c, hw, g))
	case len(inp) != b*c*hw || len(out) != b*c*hw:
		panic(fmt.Sprintf("kernels: group norm input/output have %d/%d values, want %d", len(inp), len(out), b*c*hw))
	case len(gamma) != c || len(beta) != c:
		panic(fmt.Sprintf("kernels: group norm gamma/beta have %d/%d values, want %d", len(gamma), len(beta), c))
	}
}

// GroupNormNaive is the reference group normalization (torch.nn.GroupNorm), in float64:
// for each batch item b and group g of C/G consecutive channels, μ and σ² are the mean and the
// biased variance over its (C/G)·HW values, and
//
//	out[b,c,p] = (inp[b,c,p] − μ) / sqrt(σ² + eps) · gamma[c] + beta[c].
//
// inp, out: (B,C,HW); gamma, beta: (C). It panics when a length does not match or G ∤ C.
func GroupNormNaive(out, inp, gamma, beta []float32, b, c, hw, g int, eps float32) {
	checkGroupNorm(out, inp, gamma, beta, b, c, hw, g)
	cg := c / g
	for bi := 0; bi < b; bi++ {
		for gi := 0; gi < g; gi++ {
			x := inp[(bi*c+gi*cg)*hw : (bi*c+(gi+1)*cg)*hw]
			var mean, v float64
			for _, xv := range x {
				mean += float64(xv)
			}
			mean /= float64(len(x))
			for _, xv := range x {
				d := float64(xv) - mean
				v += d * d
			}
			v /= float64(len(x))
			rstd := 1 / math.Sqrt(v+float64(eps))
			for j := 0; j < cg; j++ {
				ch := gi*cg + j
				for p := 0; p < hw; p++ {
					i := (bi*c+ch)*hw + p
					out[i] = float32((float64(inp[i])-mean)*rstd*float64(gamma[ch]) + float64(beta[ch]))
				}
			}
		}
	}
}

// GroupNorm computes the same normalization as GroupNormNaive, with the (B·G) groups spread over
// GOMAXPROCS goroutines. Statistics are two-pass in float64, so a large mean does not cancel the
// variance (on AVX2, four float64 lanes per instruction); the normalization itself runs in
// float32 on AVX2 with the mean split in two float32s (groupNormAffineAVX2). out may alias inp.
func GroupNorm(out, inp, gamma, beta []float32, b, c, hw, g int, eps float32) {
	groupNorm(out, inp, gamma, beta, b, c, hw, g, eps, false)
}

// GroupNormSiLU computes SiLU(GroupNorm(inp)) in one pass over the output, the pairing every
// ResnetBlock2D and the VAE's conv_norm_out use. out may alias inp.
func GroupNormSiLU(out, inp, gamma, beta []float32, b, c, hw, g int, eps float32) {
	groupNorm(out, inp, gamma, beta, b, c, hw, g, eps, true)
}

func groupNorm(out, inp, gamma, beta []float32, b, c, hw, g int, eps float32, silu bool) {
	checkGroupNorm(out, inp, gamma, beta, b, c, hw, g)
	cg := c / g
	parallelRange(b*g, cg*hw, func(lo, hi int) {
		for bg := lo; bg < hi; bg++ {
			bi, gi := bg/g, bg%g
			base := (bi*c + gi*cg) * hw
			x := inp[base : base+cg*hw]
			n8 := 0
			if useSIMD {
				n8 = len(x) &^ 7
			}
			var sum float64
			if n8 > 0 {
				sum = sumF64AVX2(x[:n8])
			}
			for _, xv := range x[n8:] {
				sum += float64(xv)
			}
			mean := sum / float64(len(x))
			var ss float64
			if n8 > 0 {
				ss = sumSqDevF64AVX2(x[:n8], mean)
			}
			for _, xv := range x[n8:] {
				d := float64(xv) - mean
				ss += d * d
			}
			rstd := 1 / math.Sqrt(ss/float64(len(x))+float64(eps))
			for j := 0; j < cg; j++ {
				ch := gi*cg + j
				// Per value in float64: a float32 x·a + (β − μ·a) cancels badly when |μ| ≫ σ.
				a := float64(gamma[ch]) * rstd
				sh := float64(beta[ch])
				src := inp[base+j*hw : base+(j+1)*hw]
				dst := out[base+j*hw : base+(j+1)*hw]
				m8, m16 := 0, 0 // dst[:m16] takes the fused AVX-512 kernel, dst[:m8] the AVX2 affine
				if useSIMD {
					// (x − μ_hi − μ_lo)·a + β in float32: x − μ_hi is exact near μ.
					m8 = hw &^ 7
					hi := float32(mean)
					p := [4]float32{hi, float32(mean - float64(hi)), float32(a), float32(sh)}
					if silu && useAVX512 {
						// Affine and SiLU in one pass over the row, with the AVX2 kernels' bits.
						m16 = hw &^ 15
						groupNormAffineSiLUAVX512(dst[:m16], src[:m16], p[:])
					}
					groupNormAffineAVX2(dst[m16:m8], src[m16:m8], p[:])
				}
				for p, xv := range src[m8:] {
					dst[m8+p] = float32((float64(xv)-mean)*a + sh)
				}
				if silu {
					siluSpan(dst[m16:], dst[m16:])
				}
			}
		}
	})
}
