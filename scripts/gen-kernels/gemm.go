package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// gemmRx64 is the AVX-512 GEMM tile kernel for r = 1…6 rows of a packed A strip (the strip is
// always six rows wide, a[p·6+i]; rows past r are not read into C) against four packed B
// panels of 16 columns, panel q at b[q·bs:]: C[0:r,0:64] += Σ_p A[p,0:r]ᵀ·B[p,0:64]. Every C
// element is one FMA chain over p in order, as in gemm6x16AVX2 and gemm6x64AVX512, so all these
// kernels give the same bits; with r < 6 a GEMM's last row strip runs on ZMM registers straight
// into C instead of on the YMM kernel over a zero-padded copy (64 prefill rows = 10 strips of
// six and one of four).
//
// With len(init) > 0 the accumulators start from init[0:64] in every row instead of from C.
//
// While it computes, the kernel prefetches (PREFETCHT1, to L2) npf lines of 64 bytes from each
// panel, starting at pf in panel 0 and at the same offset in the others (pf + q·bs): one line of
// each panel per four depth steps, in the first 4·npf steps. The GEMM spreads the next depth
// block of its B panels over the row strips of the current one this way, so that block comes
// from L2 instead of memory when its first strip runs (the first strip over a block otherwise
// waited on memory: B is read from DRAM once per prefill). Prefetches never fault: pf may be
// any address when npf is 0.
func gemmRx64(r int) {
	name := fmt.Sprintf("gemm%dx64PfAVX512", r)
	TEXT(name, NOSPLIT, "func(a, b []float32, bs int, c []float32, ldc int, init []float32, pf []float32, npf int)")
	Pragma("noescape")
	Doc(fmt.Sprintf("%s adds the product of the first %d rows of a packed strip a (k×6) and four packed panels b[q·bs:] (k×16 each) to the %d×64 tile of c (row stride ldc), starting from init[0:64] instead of c when len(init) > 0; it prefetches npf lines at pf+q·bs, q < 4, meanwhile. k = len(a)/6.", name, r, r))

	// The C row addresses (tileRows) are computed where the accumulators are loaded and again
	// where they are stored, so that no register holds them in the loop.
	cRows := func() []Mem { return tileRows()[:r] }
	l := func(s string) string { return name + "_" + s }

	acc := make([][4]VecVirtual, r)
	for i := range acc {
		for q := range acc[i] {
			acc[i][q] = ZMM()
		}
	}
	ilen := Load(Param("init").Len(), GP64())
	TESTQ(ilen, ilen)
	JZ(LabelRef(l("fromc")))
	pi := Load(Param("init").Base(), GP64())
	for i := range acc {
		for q := range acc[i] {
			VMOVUPS(Mem{Base: pi, Disp: 64 * q}, acc[i][q])
		}
	}
	JMP(LabelRef(l("start")))
	Label(l("fromc"))
	rows := cRows()
	for i := range acc {
		for q := range acc[i] {
			VMOVUPS(rows[i].Offset(64*q), acc[i][q])
		}
	}
	Label(l("start"))

	pa := Load(Param("a").Base(), GP64())
	end := Load(Param("a").Len(), GP64())
	SHLQ(Imm(2), end)
	ADDQ(pa, end)
	end4 := GP64() // last pa at which four more steps fit
	LEAQ(Mem{Base: end, Disp: -4 * 24}, end4)
	pb := Load(Param("b").Base(), GP64())
	bs := Load(Param("bs"), GP64())
	SHLQ(Imm(2), bs)
	bs3 := GP64()
	LEAQ(Mem{Base: bs, Index: bs, Scale: 2}, bs3)
	pf := Load(Param("pf").Base(), GP64())
	npf := Load(Param("npf"), GP64())
	panel := func(base Register, q, disp int) Mem {
		switch q {
		case 0:
			return Mem{Base: base, Disp: disp}
		case 1:
			return Mem{Base: base, Index: bs, Scale: 1, Disp: disp}
		case 2:
			return Mem{Base: base, Index: bs, Scale: 2, Disp: disp}
		}
		return Mem{Base: base, Index: bs3, Scale: 1, Disp: disp}
	}
	bq := []VecVirtual{ZMM(), ZMM(), ZMM(), ZMM()}
	av := ZMM()
	step := func(s int) {
		for q := range bq {
			VMOVUPS(panel(pb, q, 64*s), bq[q])
		}
		for i := range acc {
			VBROADCASTSS(Mem{Base: pa, Disp: 24*s + 4*i}, av)
			for q := range bq {
				VFMADD231PS(bq[q], av, acc[i][q])
			}
		}
	}
	steps4 := func() {
		for s := 0; s < 4; s++ {
			step(s)
		}
		ADDQ(Imm(4*24), pa)
		ADDQ(U32(4*64), pb)
	}

	Label(l("pf4")) // four steps and one line of each panel prefetched, while npf > 0
	TESTQ(npf, npf)
	JZ(LabelRef(l("loop4")))
	CMPQ(pa, end4)
	JA(LabelRef(l("loop1")))
	for q := 0; q < 4; q++ {
		PREFETCHT1(panel(pf, q, 0))
	}
	ADDQ(Imm(64), pf)
	DECQ(npf)
	steps4()
	JMP(LabelRef(l("pf4")))

	Label(l("loop4"))
	CMPQ(pa, end4)
	JA(LabelRef(l("loop1")))
	steps4()
	JMP(LabelRef(l("loop4")))

	Label(l("loop1"))
	CMPQ(pa, end)
	JAE(LabelRef(l("done")))
	step(0)
	ADDQ(Imm(24), pa)
	ADDQ(Imm(64), pb)
	JMP(LabelRef(l("loop1")))

	Label(l("done"))
	rows = cRows()
	for i := range acc {
		for q := range acc[i] {
			VMOVUPS(acc[i][q], rows[i].Offset(64*q))
		}
	}
	VZEROUPPER()
	RET()
}

// expPSZ is expPS on a ZMM register, each constant broadcast from its first lane ({1to16}): the
// same operations in the same order, so every lane has expPS's bits.
func expPSZ(v VecVirtual) VecVirtual {
	c := expConstants()
	VMAXPS_BCST(c.lo, v, v)
	VMINPS_BCST(c.hi, v, v)
	n, r, p, r2 := ZMM(), ZMM(), ZMM(), ZMM()
	VMULPS_BCST(c.log2e, v, n)
	VRNDSCALEPS(Imm(0), n, n) // to nearest, as VROUNDPS $0
	VMOVAPS(v, r)
	VFNMADD231PS_BCST(c.ln2hi, n, r)
	VFNMADD231PS_BCST(c.ln2lo, n, r)
	VBROADCASTSS(c.p[0], p)
	for _, k := range c.p[1:] {
		VFMADD213PS_BCST(k, r, p)
	}
	VMULPS(r, r, r2)
	VFMADD213PS(r, r2, p)
	VADDPS_BCST(c.one, p, p)
	VCVTPS2DQ(n, n)
	VPADDD_BCST(c.bias, n, n)
	VPSLLD(Imm(23), n, n)
	VMULPS(n, p, p)
	return p
}

// geluZ is gelu (GPT-2's gelu_new) sixteen lanes at a time: geluAVX2's operations on ZMM
// registers, so each element has geluAVX2's bits; len(dst) a multiple of 16.
func geluZ() {
	TEXT("geluAVX512", NOSPLIT, "func(dst, x []float32)")
	Pragma("noescape")
	Doc("geluAVX512 sets dst[i] = gelu_new(x[i]) for i < len(dst), a multiple of 16, with geluAVX2's bits.")
	pd := Load(Param("dst").Base(), GP64())
	n := Load(Param("dst").Len(), GP64())
	px := Load(Param("x").Base(), GP64())
	j := GP64()
	XORQ(j, j)
	// gelu's constants (defined by gelu, which runs first), broadcast from their first lane.
	c3, k2, half, two := sharedConst("gelu_c3"), sharedConst("gelu_2c"), sharedConst("gelu_half"), sharedConst("gelu_two")
	Label("geluZ_loop")
	CMPQ(j, n)
	JGE(LabelRef("geluZ_done"))
	x, v, t := ZMM(), ZMM(), ZMM()
	VMOVUPS(Mem{Base: px, Index: j, Scale: 4}, x)
	VMULPS(x, x, v)
	VMULPS_BCST(c3, v, v)
	VFMADD213PS(x, x, v)
	VMULPS_BCST(k2, v, v)
	e := expPSZ(v)
	VADDPS_BCST(expConstants().one, e, e)
	VBROADCASTSS(two, t)
	VDIVPS(e, t, t)
	u := ZMM()
	VBROADCASTSS(two, u)
	VSUBPS(t, u, u)
	VMULPS_BCST(half, x, x)
	VMULPS(u, x, x)
	VMOVUPS(x, Mem{Base: pd, Index: j, Scale: 4})
	ADDQ(Imm(16), j)
	JMP(LabelRef("geluZ_loop"))
	Label("geluZ_done")
	VZEROUPPER()
	RET()
}

// sharedConst refers to a constant that constant() has already defined under name.
func sharedConst(name string) Mem { return NewDataAddr(Symbol{Name: name, Static: true}, 0) }
