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
