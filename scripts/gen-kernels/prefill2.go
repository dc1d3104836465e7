package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// prefill2Kernels are the row kernels of a prefill's non-GEMM phases on AVX-512: the softmax
// exponentials of attention and LayerNorm's affine step.
func prefill2Kernels() {
	expScaledSumZ()
	layerNormAffineZ()
	packA6()
}

// packA6 is packA6AVX512(blk, a, lda, rows): the GEMM's A strip of six rows interleaved by depth,
// blk[6q+r] = a[r·lda+q] for q < len(blk)/6 (a multiple of 8) and r < rows (1…6), the lanes
// r ≥ rows untouched. Eight depth steps at a time: the six rows' eight values (rows past rows
// read row 0 again) go through an 8×8 transpose (unpack, shuffle, 128-bit lane shuffle; rows 6
// and 7 repeat 4 and 5) and each transposed row is stored under a mask of the first rows lanes,
// so neighbouring strips and the zero rows of a partial strip are never written.
func packA6() {
	TEXT("packA6AVX512", NOSPLIT, "func(blk, a []float32, lda, rows int)")
	Pragma("noescape")
	Doc("packA6AVX512 sets blk[6q+r] = a[r·lda+q] for q < len(blk)/6, a multiple of 8, and r < rows (1…6), leaving the other lanes of blk as they are.")
	pb := Load(Param("blk").Base(), GP64())
	n := Load(Param("blk").Len(), GP64())
	pa, lda, rows := GP64(), GP64(), GP64()
	Load(Param("a").Base(), pa)
	Load(Param("lda"), lda)
	Load(Param("rows"), rows)
	SHLQ(Imm(2), lda)
	ones, bits := GP32(), GP32()
	MOVL(U32(0xff), ones)
	BZHIL(rows.As32(), ones, bits)
	km := K()
	KMOVB(bits, km)
	// Row pointers: row r at a + r·lda when r < rows, else row 0.
	ptr := make([]GPVirtual, 6)
	ptr[0] = pa
	cur := GP64()
	MOVQ(pa, cur)
	for r := 1; r < 6; r++ {
		ADDQ(lda, cur)
		ptr[r] = GP64()
		MOVQ(cur, ptr[r])
		CMPQ(rows, Imm(uint64(r)))
		CMOVQLE(pa, ptr[r])
	}
	j := GP64()
	XORQ(j, j)
	Label("packa6_loop")
	CMPQ(j, n)
	JGE(LabelRef("packa6_done"))
	y := make([]VecVirtual, 6)
	for r := range y {
		y[r] = YMM()
		VMOVUPS(Mem{Base: ptr[r]}, y[r])
		ADDQ(Imm(32), ptr[r])
	}
	// t0 = (y0,y1) low pairs, t1 high; t2, t3 of (y2,y3); t4, t5 of (y4,y5).
	t := make([]VecVirtual, 6)
	for i := 0; i < 3; i++ {
		t[2*i], t[2*i+1] = YMM(), YMM()
		VUNPCKLPS(y[2*i+1], y[2*i], t[2*i])
		VUNPCKHPS(y[2*i+1], y[2*i], t[2*i+1])
	}
	// u[q] holds rows 0–3 of depth q (low lane) and q+4 (high lane); v[q] rows 4, 5.
	u, v := make([]VecVirtual, 4), make([]VecVirtual, 4)
	for q := 0; q < 4; q++ {
		imm := uint64(0x44)
		if q%2 == 1 {
			imm = 0xee
		}
		u[q], v[q] = YMM(), YMM()
		VSHUFPS(Imm(imm), t[2+q/2], t[q/2], u[q])
		VSHUFPS(Imm(imm), t[4+q/2], t[4+q/2], v[q])
	}
	for q := 0; q < 8; q++ {
		o := YMM()
		imm := uint64(0) // low lanes: depth q < 4
		if q >= 4 {
			imm = 3
		}
		VSHUFF32X4(Imm(imm), v[q%4], u[q%4], o)
		VMOVUPS(o, km, Mem{Base: pb, Disp: 24 * q})
	}
	ADDQ(Imm(8*6*4), pb)
	ADDQ(Imm(8*6), j)
	JMP(LabelRef("packa6_loop"))
	Label("packa6_done")
	VZEROUPPER()
	RET()
}

// expScaledSumZ is expScaledSumAVX512(x, n, s, m): x[i] = exp(x[i]·s − m) (the product and the
// difference each rounded, as Go computes them) for i < n, 0 for n ≤ i < len(x) and where
// x[i]·s − m < −87.3 (e.g. a −Inf score: exp would give 1.2e-38, not 0); it returns the sum of
// x[0:len(x)], accumulated in sixteen lanes and then halved 16 → 8 → 4 → 2 → 1, a fixed order.
// len(x) is a multiple of 16. expPSZ is Cephes' expf (about 1 ulp).
func expScaledSumZ() {
	TEXT("expScaledSumAVX512", NOSPLIT, "func(x []float32, n int, s, m float32) float32")
	Pragma("noescape")
	Doc("expScaledSumAVX512 sets x[i] = exp(x[i]·s − m) for i < n (0 where x[i]·s − m < −87.3), x[i] = 0 for n ≤ i < len(x), a multiple of 16, and returns Σ x[i] in a fixed order.")
	px := Load(Param("x").Base(), GP64())
	l := Load(Param("x").Len(), GP64())
	n := Load(Param("n"), GP64())
	sv, mv, lo, acc := ZMM(), ZMM(), ZMM(), ZMM()
	VBROADCASTSS(Load(Param("s"), XMM()), sv)
	VBROADCASTSS(Load(Param("m"), XMM()), mv)
	VBROADCASTSS(expConstants().lo, lo)
	VXORPS(acc, acc, acc)
	ones := GP32()
	MOVL(U32(0xffffffff), ones)
	j := GP64()
	XORQ(j, j)
	Label("expss_loop")
	CMPQ(j, l)
	JGE(LabelRef("expss_done"))
	// lanes below n: the low max(0, min(16, n−j)) bits (BZHI keeps all 32 for an index ≥ 32)
	rem, bits := GP64(), GP32()
	MOVQ(n, rem)
	SUBQ(j, rem)
	XORL(bits, bits)
	CMPQ(rem, Imm(0))
	JLE(LabelRef("expss_mask"))
	CMPQ(rem, Imm(32))
	JL(LabelRef("expss_bzhi"))
	MOVQ(U32(32), rem)
	Label("expss_bzhi")
	BZHIL(rem.As32(), ones, bits)
	Label("expss_mask")
	kn, kv := K(), K()
	KMOVW(bits, kn)
	v := ZMM()
	VMULPS(Mem{Base: px, Index: j, Scale: 4}, sv, v)
	VSUBPS(mv, v, v)
	VCMPPS(Imm(0x1d), lo, v, kn, kv) // v ≥ −87.3 (false for NaN and −Inf), and below n
	e := expPSZ(v)
	VMOVAPS_Z(e, kv, e)
	VMOVUPS(e, Mem{Base: px, Index: j, Scale: 4})
	VADDPS(e, acc, acc)
	ADDQ(Imm(16), j)
	JMP(LabelRef("expss_loop"))
	Label("expss_done")
	hi, lo8 := YMM(), YMM()
	VEXTRACTF32X8(Imm(1), acc, hi)
	VADDPS(hi, acc.AsY(), lo8)
	h4, l4 := XMM(), XMM()
	VEXTRACTF128(Imm(1), lo8, h4)
	VADDPS(h4, lo8.AsX(), l4)
	h2 := XMM()
	VMOVHLPS(l4, l4, h2)
	VADDPS(h2, l4, l4)
	h1 := XMM()
	VMOVSHDUP(l4, h1)
	VADDSS(h1, l4, l4)
	VZEROUPPER()
	Store(l4, ReturnIndex(0))
	RET()
}

// layerNormAffineZ is layerNormAffineAVX512(dst, x, gamma, beta, p): dst[i] =
// float32((float64(x[i]) − p[0])·p[1])·gamma[i] + beta[i], eight values per step — LayerNorm's
// last pass with Go's roundings (float64 centring and scaling, one conversion, then a float32
// product and a float32 sum, not fused). len(dst) is a multiple of 8.
func layerNormAffineZ() {
	TEXT("layerNormAffineAVX512", NOSPLIT, "func(dst, x, gamma, beta []float32, p []float64)")
	Pragma("noescape")
	Doc("layerNormAffineAVX512 sets dst[i] = float32((float64(x[i]) − p[0])·p[1])·gamma[i] + beta[i] for i < len(dst), a multiple of 8, with Go's roundings.")
	pd := Load(Param("dst").Base(), GP64())
	l := Load(Param("dst").Len(), GP64())
	px := Load(Param("x").Base(), GP64())
	pg := Load(Param("gamma").Base(), GP64())
	pb := Load(Param("beta").Base(), GP64())
	pp := Load(Param("p").Base(), GP64())
	mean, inv := ZMM(), ZMM()
	VBROADCASTSD(Mem{Base: pp}, mean)
	VBROADCASTSD(Mem{Base: pp, Disp: 8}, inv)
	j := GP64()
	XORQ(j, j)
	Label("lnaff_loop")
	CMPQ(j, l)
	JGE(LabelRef("lnaff_done"))
	d := ZMM()
	VCVTPS2PD(Mem{Base: px, Index: j, Scale: 4}, d)
	VSUBPD(mean, d, d)
	VMULPD(inv, d, d)
	y := YMM()
	VCVTPD2PS(d, y)
	VMULPS(Mem{Base: pg, Index: j, Scale: 4}, y, y)
	VADDPS(Mem{Base: pb, Index: j, Scale: 4}, y, y)
	VMOVUPS(y, Mem{Base: pd, Index: j, Scale: 4})
	ADDQ(Imm(8), j)
	JMP(LabelRef("lnaff_loop"))
	Label("lnaff_done")
	VZEROUPPER()
	RET()
}
