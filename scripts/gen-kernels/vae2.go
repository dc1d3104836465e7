package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// convDirectRx64 is the direct convolution's AVX-512 micro-kernel (native/kernels/convdirect.go):
// the r×64 tile C[0:r, 64 columns] = init + Σ_p A[p,0:r]ᵀ·B[p, 64 columns] over one packed A
// strip (a[p·6+i], as gemm6x64's) where B is never packed: its 64 columns are four runs of 16
// consecutive input values, run q at x[xo[q] + offs[p]] (offs[p] an element offset per depth
// step: input channel, kernel tap and stride phase). Output run q of row i is at
// c[co[q] + i·ldc]. The accumulators start from bias[i] (broadcast) when len(bias) > 0 and from C
// otherwise, so that the depth can be split into blocks. Each step is one offset load, four ZMM
// loads of B, r broadcasts of A and 4r FMAs, in depth order per output (one FMA chain).
func convDirectRx64(r int) {
	name := fmt.Sprintf("convDirect%dx64AVX512", r)
	TEXT(name, NOSPLIT, "func(a []float32, offs []int32, x []float32, xo []int, c []float32, co []int, ldc int, bias []float32)")
	Pragma("noescape")
	Doc(fmt.Sprintf("%s sets the %d×64 tile of c (run q of row i at c[co[q]+i·ldc], q < 4) to bias[i] (or, when bias is empty, its values) plus Σ_p a[p·6+i]·x[xo[q]+offs[p]+0..15] over p < len(offs).", name, r))
	l := func(s string) string { return name + "_" + s }

	// Output addresses: run q of row 0, and ldc in bytes.
	cRun := func() ([4]Register, Register) {
		runs := runAddrs("c", "co")
		ldc := Load(Param("ldc"), GP64())
		SHLQ(Imm(2), ldc)
		return runs, ldc
	}
	acc := make([][4]VecVirtual, r)
	for i := range acc {
		for q := range acc[i] {
			acc[i][q] = ZMM()
		}
	}
	blen := Load(Param("bias").Len(), GP64())
	TESTQ(blen, blen)
	JZ(LabelRef(l("fromc")))
	pbias := Load(Param("bias").Base(), GP64())
	for i := range acc {
		VBROADCASTSS(Mem{Base: pbias, Disp: 4 * i}, acc[i][0])
		for q := 1; q < 4; q++ {
			VMOVAPS(acc[i][0], acc[i][q])
		}
	}
	JMP(LabelRef(l("start")))
	Label(l("fromc"))
	{
		runs, ldc := cRun()
		for i := range acc {
			for q := range acc[i] {
				VMOVUPS(Mem{Base: runs[q]}, acc[i][q])
			}
			if i < r-1 {
				for q := range runs {
					ADDQ(ldc, runs[q])
				}
			}
		}
	}
	Label(l("start"))

	pa := Load(Param("a").Base(), GP64())
	poff := Load(Param("offs").Base(), GP64())
	end := Load(Param("offs").Len(), GP64())
	LEAQ(Mem{Base: poff, Index: end, Scale: 4}, end)
	xs := runAddrs("x", "xo")
	off := GP64()
	bq := []VecVirtual{ZMM(), ZMM(), ZMM(), ZMM()}
	av := ZMM()
	Label(l("loop"))
	CMPQ(poff, end)
	JAE(LabelRef(l("done")))
	MOVLQSX(Mem{Base: poff}, off)
	for q := range bq {
		VMOVUPS(Mem{Base: xs[q], Index: off, Scale: 4}, bq[q])
	}
	for i := range acc {
		VBROADCASTSS(Mem{Base: pa, Disp: 4 * i}, av)
		for q := range bq {
			VFMADD231PS(bq[q], av, acc[i][q])
		}
	}
	ADDQ(Imm(24), pa)
	ADDQ(Imm(4), poff)
	JMP(LabelRef(l("loop")))
	Label(l("done"))

	runs, ldc := cRun()
	for i := range acc {
		for q := range acc[i] {
			VMOVUPS(acc[i][q], Mem{Base: runs[q]})
		}
		if i < r-1 {
			for q := range runs {
				ADDQ(ldc, runs[q])
			}
		}
	}
	VZEROUPPER()
	RET()
}

// runAddrs loads the addresses of the four runs &base[offs[q]], q < 4, of the []float32
// parameter base and the []int parameter offs.
func runAddrs(base, offs string) [4]Register {
	pb := Load(Param(base).Base(), GP64())
	po := Load(Param(offs).Base(), GP64())
	var runs [4]Register
	for q := range runs {
		runs[q] = GP64()
		MOVQ(Mem{Base: po, Disp: 8 * q}, runs[q])
		LEAQ(Mem{Base: pb, Index: runs[q], Scale: 4}, runs[q])
	}
	return runs
}

// expSubSum is the exponentials of a softmax row: dst[i] = exp(x[i] − m) for i < len(dst), a
// multiple of 8, with the eight lane sums of dst (lane l: Σ dst[8t+l] in order of t) written
// to sum[0:8]; dst may alias x.
func expSubSum() {
	TEXT("expSubSumAVX2", NOSPLIT, "func(dst, x []float32, m float32, sum []float32)")
	Pragma("noescape")
	Doc("expSubSumAVX2 sets dst[i] = exp(x[i]−m) for i < len(dst), a multiple of 8, and sum[l] = Σ_t dst[8t+l], l < 8.")
	pd := Load(Param("dst").Base(), GP64())
	n := Load(Param("dst").Len(), GP64())
	px := Load(Param("x").Base(), GP64())
	ps := Load(Param("sum").Base(), GP64())
	mx := Load(Param("m"), XMM())
	mv, acc := YMM(), YMM()
	VBROADCASTSS(mx, mv)
	VXORPS(acc, acc, acc)
	j := GP64()
	XORQ(j, j)
	Label("expsub_loop")
	CMPQ(j, n)
	JGE(LabelRef("expsub_done"))
	v := YMM()
	VMOVUPS(Mem{Base: px, Index: j, Scale: 4}, v)
	VSUBPS(mv, v, v)
	e := expPS(v)
	VMOVUPS(e, Mem{Base: pd, Index: j, Scale: 4})
	VADDPS(e, acc, acc)
	ADDQ(Imm(8), j)
	JMP(LabelRef("expsub_loop"))
	Label("expsub_done")
	VMOVUPS(acc, Mem{Base: ps})
	VZEROUPPER()
	RET()
}

// winograd43In8x2 is winograd43In16 for output rows of 32 (eight tiles per tile row): tiles
// 0–7 come from the 6×36 patch r0[i·ld+x] and tiles 8–15 from r1[i·ld+x] (two tile rows, or
// any two runs of eight tiles), so that a panel of 16 tiles still fills one ZMM vector. Its
// loads are winograd43In16's with columns 32–67 read from r1 instead of r0 + 32.
func winograd43In8x2() {
	TEXT("winograd43In8x2AVX512", NOSPLIT, "func(v []float32, stride int, r0, r1 []float32, ld int, tmp []float32)")
	Pragma("noescape")
	Doc("winograd43In8x2AVX512 writes the Winograd F(4×4,3×3) input transform of 16 tiles, tiles 0–7 from the 6×36 patch r0[i·ld+x] and 8–15 from r1[i·ld+x], to v[ξ·stride+t], ξ < 36, t < 16; tmp holds 576 values.")
	pv, stride := Load(Param("v").Base(), GP64()), loadStride("stride")
	pr0, pr1, ld := Load(Param("r0").Base(), GP64()), Load(Param("r1").Base(), GP64()), loadStride("ld")
	pt := Load(Param("tmp").Base(), GP64())
	w43InBody("w43s", pv, stride, pt, func(x *[8]VecVirtual) {
		for h, off := range []int{0, 16, 0, 16, 4, 20, 4, 20} {
			base := pr0
			if h%4 >= 2 {
				base = pr1
			}
			x[h] = ZMM()
			VMOVUPS(Mem{Base: base, Disp: 4 * off}, x[h])
		}
	}, func() {
		ADDQ(ld, pr0)
		ADDQ(ld, pr1)
	})
}

// w43InBody is the input transform shared by winograd43In16 and winograd43In8x2 (data names
// prefixed by prefix): per input row i < 6, load fills x with the 16 tiles' columns 0–63 and
// 4–67 (as four vectors each) and next steps to the next row; the columns are split into their
// phases x mod 4, B is applied across them into tmp (pt), then Bᵀ down the rows into v (pv).
func w43InBody(prefix string, pv, stride, pt Register, load func(x *[8]VecVirtual), next func()) {
	c := w43Load(false)
	stride6 := GP64() // from V[6k+l] to V[6(k+1)+l]
	LEAQ(Mem{Base: stride, Index: stride, Scale: 2}, stride6)
	SHLQ(Imm(1), stride6)
	even, odd := ZMM(), ZMM()
	VMOVDQU32(indices(prefix+"_even", func(i int) int { return 2 * i }), even)
	VMOVDQU32(indices(prefix+"_odd", func(i int) int { return 2*i + 1 }), odd)
	for i := 0; i < 6; i++ {
		var x [8]VecVirtual
		load(&x)
		e01, o01 := permute(x[0], x[1], even), permute(x[0], x[1], odd)
		e23, o23 := permute(x[2], x[3], even), permute(x[2], x[3], odd)
		var p [6]VecVirtual
		p[0], p[2] = permute(e01, e23, even), permute(e01, e23, odd)
		p[1], p[3] = permute(o01, o23, even), permute(o01, o23, odd)
		e45, o45 := permute(x[4], x[5], even), permute(x[4], x[5], odd)
		e67, o67 := permute(x[6], x[7], even), permute(x[6], x[7], odd)
		p[4], p[5] = permute(e45, e67, even), permute(o45, o67, even)
		w := w43Bt(c, p)
		for l := range w {
			VMOVUPS(w[l], Mem{Base: pt, Disp: 64 * (6*i + l)})
		}
		if i < 5 {
			next()
		}
	}
	for l := 0; l < 6; l++ {
		var d [6]VecVirtual
		for i := range d {
			d[i] = ZMM()
			VMOVUPS(Mem{Base: pt, Disp: 64 * (6*i + l)}, d[i])
		}
		o := w43Bt(c, d)
		out := GP64()
		MOVQ(pv, out)
		for k := range o {
			VMOVUPS(o[k], Mem{Base: out})
			if k < 5 {
				ADDQ(stride6, out)
			}
		}
		if l < 5 {
			ADDQ(stride, pv)
		}
	}
	VZEROUPPER()
	RET()
}

// winograd43Out8x2 is winograd43Out16 for output rows of 32: tiles 0–7 go to the 4×32 block
// y0[r·ldy+x] and tiles 8–15 to y1[r·ldy+x].
func winograd43Out8x2() {
	TEXT("winograd43Out8x2AVX512", NOSPLIT, "func(y0, y1 []float32, ldy int, m []float32, stride int, bias []float32, tmp []float32)")
	Pragma("noescape")
	Doc("winograd43Out8x2AVX512 writes the Winograd F(4×4,3×3) output transform of 16 tiles (M[ξ] at m[ξ·stride+t]) plus bias[0], tiles 0–7 to y0[r·ldy:r·ldy+32] and 8–15 to y1[r·ldy:r·ldy+32], r < 4; tmp holds 384 values.")
	py0, py1, ldy := Load(Param("y0").Base(), GP64()), Load(Param("y1").Base(), GP64()), loadStride("ldy")
	w43OutBody("w43s", func(h int, v VecVirtual) {
		if h < 2 {
			VMOVUPS(v, Mem{Base: py0, Disp: 64 * h})
		} else {
			VMOVUPS(v, Mem{Base: py1, Disp: 64 * (h - 2)})
		}
	}, func() {
		ADDQ(ldy, py0)
		ADDQ(ldy, py1)
	})
}

// w43OutBody is the output transform shared by winograd43Out16 and winograd43Out8x2 (data
// names prefixed by prefix), after their output pointers: Aᵀ down the columns of M (params m,
// stride) into tmp, then across each row plus bias[0]; store(h, v) writes the h-th 16 values
// (h < 4) of output row r, and next steps to row r+1.
func w43OutBody(prefix string, store func(h int, v VecVirtual), next func()) {
	pm, stride := Load(Param("m").Base(), GP64()), loadStride("stride")
	pb := Load(Param("bias").Base(), GP64())
	pt := Load(Param("tmp").Base(), GP64())
	c := w43Load(true)
	// stride6 = 6·stride: from M[6k+l] to M[6(k+1)+l].
	stride6 := GP64()
	LEAQ(Mem{Base: stride, Index: stride, Scale: 2}, stride6)
	SHLQ(Imm(1), stride6)
	for l := 0; l < 6; l++ {
		var d [6]VecVirtual
		q := GP64()
		MOVQ(pm, q)
		for k := range d {
			d[k] = ZMM()
			VMOVUPS(Mem{Base: q}, d[k])
			if k < 5 {
				ADDQ(stride6, q)
			}
		}
		o := w43At(c, d, nil)
		for r := range o {
			VMOVUPS(o[r], Mem{Base: pt, Disp: 64 * (6*r + l)})
		}
		if l < 5 {
			ADDQ(stride, pm)
		}
	}
	bv := ZMM()
	VBROADCASTSS(Mem{Base: pb}, bv)
	lo, hi := ZMM(), ZMM()
	VMOVDQU32(indices(prefix+"_lo", func(i int) int { return i/2 + 16*(i%2) }), lo)
	VMOVDQU32(indices(prefix+"_hi", func(i int) int { return 8 + i/2 + 16*(i%2) }), hi)
	for r := 0; r < 4; r++ {
		var t [6]VecVirtual
		for l := range t {
			t[l] = ZMM()
			VMOVUPS(Mem{Base: pt, Disp: 64 * (6*r + l)}, t[l])
		}
		y := w43At(c, t, bv)
		// (y0,y2) and (y1,y3) interleaved, then the two results: y0[t],y1[t],y2[t],y3[t].
		a0, a1 := permute(y[0], y[2], lo), permute(y[0], y[2], hi)
		b0, b1 := permute(y[1], y[3], lo), permute(y[1], y[3], hi)
		for h, v := range []VecVirtual{permute(a0, b0, lo), permute(a0, b0, hi), permute(a1, b1, lo), permute(a1, b1, hi)} {
			store(h, v)
		}
		if r < 3 {
			next()
		}
	}
	VZEROUPPER()
	RET()
}

// groupNormAffineSiLUZ is groupNormAffineAVX2 followed by siluAVX2 in one pass, sixteen lanes
// at a time: dst[i] = silu((x[i] − p[0] − p[1])·p[2] + p[3]) with the two kernels' operations
// on ZMM registers (expPSZ has expPS's bits), so each element has their bits.
func groupNormAffineSiLUZ() {
	TEXT("groupNormAffineSiLUAVX512", NOSPLIT, "func(dst, x, p []float32)")
	Pragma("noescape")
	Doc("groupNormAffineSiLUAVX512 sets dst[i] = silu((x[i] − p[0] − p[1])·p[2] + p[3]) for i < len(dst), a multiple of 16, with groupNormAffineAVX2's and siluAVX2's bits.")
	pd, n, px, c := affineParams(ZMM)
	sign := ZMM()
	VPBROADCASTD(constant("gnsilu_sign", uint32(0x80000000)), sign)
	j := GP64()
	XORQ(j, j)
	Label("gnsilu_loop")
	CMPQ(j, n)
	JGE(LabelRef("gnsilu_done"))
	x, v := ZMM(), ZMM()
	VMOVUPS(Mem{Base: px, Index: j, Scale: 4}, x)
	VSUBPS(c[0], x, x)
	VSUBPS(c[1], x, x)
	VFMADD213PS(c[3], c[2], x) // x·p[2] + p[3]
	VPXORD(sign, x, v)
	e := expPSZ(v)
	VADDPS_BCST(expConstants().one, e, e)
	VDIVPS(e, x, x)
	VMOVUPS(x, Mem{Base: pd, Index: j, Scale: 4})
	ADDQ(Imm(16), j)
	JMP(LabelRef("gnsilu_loop"))
	Label("gnsilu_done")
	VZEROUPPER()
	RET()
}

// affineParams loads the parameters of the GroupNorm affine kernels, func(dst, x, p []float32):
// dst's base and length, x's base, and p[0:4] broadcast into four vectors made by vec.
func affineParams(vec func() VecVirtual) (pd, n, px Register, c [4]VecVirtual) {
	pd = Load(Param("dst").Base(), GP64())
	n = Load(Param("dst").Len(), GP64())
	px = Load(Param("x").Base(), GP64())
	pp := Load(Param("p").Base(), GP64())
	for i := range c {
		c[i] = vec()
		VBROADCASTSS(Mem{Base: pp, Disp: 4 * i}, c[i])
	}
	return pd, n, px, c
}
