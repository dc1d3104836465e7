// Command gen-kernels generates the AVX2+FMA assembly of native/kernels with avo
// (github.com/mmcloughlin/avo): the GEMM micro-kernel, the row-panel axpy and the dot product,
// each over float32, int8 and float16 weights where decode needs them.
//
// It lives in its own module so that building and testing modelrt never needs avo; the generated
// files are committed. Regenerate from the repository root with
//
//	cd scripts/gen-kernels && go run . -out ../../native/kernels/simd_amd64.s -stubs ../../native/kernels/simd_amd64.go -pkg kernels
package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// elem describes how one weight type becomes eight float32 lanes.
type elem struct {
	suffix string                    // function name suffix
	goType string                    // element type of the weight slice
	size   int                       // bytes per element
	load8  func(m Mem, y VecVirtual) // eight elements at m → y as float32
}

var elems = []elem{
	{"F32", "float32", 4, func(m Mem, y VecVirtual) { VMOVUPS(m, y) }},
	{"I8", "int8", 1, func(m Mem, y VecVirtual) { VPMOVSXBD(m, y); VCVTDQ2PS(y, y) }},
	{"F16", "uint16", 2, func(m Mem, y VecVirtual) { VCVTPH2PS(m, y) }},
}

func main() {
	ConstraintExpr("!purego")
	gemm6x16()
	for _, e := range elems {
		axpyPanel(e)
		dot(e)
	}
	widenI8()
	widenF16()
	Generate()
}

// gemm6x16 is C[0:6,0:16] += Σ_p A[p,0:6]ᵀ·B[p,0:16] over packed panels: a holds k groups of six
// row values (a[p·6+r]), b holds k rows of sixteen (b[p·16+j]). Twelve YMM accumulators hold the
// C tile for the whole K loop; each step is two loads of B, six broadcasts of A and twelve FMAs.
func gemm6x16() {
	TEXT("gemm6x16AVX2", NOSPLIT, "func(a, b, c []float32, ldc int)")
	Pragma("noescape")
	Doc("gemm6x16AVX2 adds the product of packed panels a (k×6) and b (k×16) to the 6×16 tile of c with row stride ldc; k = len(b)/16.")
	pa := Load(Param("a").Base(), GP64())
	pb := Load(Param("b").Base(), GP64())
	k := Load(Param("b").Len(), GP64())
	SHRQ(Imm(4), k)
	pc := Load(Param("c").Base(), GP64())
	ldc := Load(Param("ldc"), GP64())
	SHLQ(Imm(2), ldc)
	p3 := GP64()
	LEAQ(Mem{Base: pc, Index: ldc, Scale: 2}, p3)
	ADDQ(ldc, p3)
	rows := []Mem{
		{Base: pc}, {Base: pc, Index: ldc, Scale: 1}, {Base: pc, Index: ldc, Scale: 2},
		{Base: p3}, {Base: p3, Index: ldc, Scale: 1}, {Base: p3, Index: ldc, Scale: 2},
	}
	var acc [6][2]VecVirtual
	for r := range acc {
		for h := range acc[r] {
			acc[r][h] = YMM()
			VMOVUPS(rows[r].Offset(32*h), acc[r][h])
		}
	}
	b0, b1, av := YMM(), YMM(), YMM()
	Label("gemm_loop")
	TESTQ(k, k)
	JZ(LabelRef("gemm_done"))
	VMOVUPS(Mem{Base: pb}, b0)
	VMOVUPS(Mem{Base: pb, Disp: 32}, b1)
	for r := range acc {
		VBROADCASTSS(Mem{Base: pa, Disp: 4 * r}, av)
		VFMADD231PS(b0, av, acc[r][0])
		VFMADD231PS(b1, av, acc[r][1])
	}
	ADDQ(Imm(24), pa)
	ADDQ(Imm(64), pb)
	DECQ(k)
	JMP(LabelRef("gemm_loop"))
	Label("gemm_done")
	for r := range acc {
		for h := range acc[r] {
			VMOVUPS(acc[r][h], rows[r].Offset(32*h))
		}
	}
	VZEROUPPER()
	RET()
}

// axpyPanel is c[j] += Σ_{p<len(a)} a[p]·w[p·ldw+j] for j < len(c) (a multiple of 8): the rows
// of w go by four at a time, so each load and store of c serves four rows of weights.
func axpyPanel(e elem) {
	name := "axpyPanel" + e.suffix + "AVX2"
	TEXT(name, NOSPLIT, fmt.Sprintf("func(c, a []float32, w []%s, ldw int)", e.goType))
	Pragma("noescape")
	Doc(name + " adds Σ_p a[p]·w[p·ldw+j] to c[j] for j < len(c), a multiple of 8.")
	pc := Load(Param("c").Base(), GP64())
	n := Load(Param("c").Len(), GP64())
	pa := Load(Param("a").Base(), GP64())
	rows := Load(Param("a").Len(), GP64())
	pw := Load(Param("w").Base(), GP64())
	stride := Load(Param("ldw"), GP64())
	if e.size > 1 {
		SHLQ(Imm(uint64(log2(e.size))), stride)
	}
	w1, w2, w3, j := GP64(), GP64(), GP64(), GP64()
	a0, a1, a2, a3, cv, t := YMM(), YMM(), YMM(), YMM(), YMM(), YMM()
	l := func(s string) string { return name + "_" + s }

	Label(l("rows4"))
	CMPQ(rows, Imm(4))
	JL(LabelRef(l("rows1")))
	VBROADCASTSS(Mem{Base: pa}, a0)
	VBROADCASTSS(Mem{Base: pa, Disp: 4}, a1)
	VBROADCASTSS(Mem{Base: pa, Disp: 8}, a2)
	VBROADCASTSS(Mem{Base: pa, Disp: 12}, a3)
	LEAQ(Mem{Base: pw, Index: stride, Scale: 1}, w1)
	LEAQ(Mem{Base: pw, Index: stride, Scale: 2}, w2)
	LEAQ(Mem{Base: w1, Index: stride, Scale: 2}, w3)
	XORQ(j, j)
	Label(l("cols4"))
	CMPQ(j, n)
	JGE(LabelRef(l("next4")))
	VMOVUPS(Mem{Base: pc, Index: j, Scale: 4}, cv)
	for i, base := range []Register{pw, w1, w2, w3} {
		e.load8(Mem{Base: base, Index: j, Scale: uint8(e.size)}, t)
		VFMADD231PS(t, []VecVirtual{a0, a1, a2, a3}[i], cv)
	}
	VMOVUPS(cv, Mem{Base: pc, Index: j, Scale: 4})
	ADDQ(Imm(8), j)
	JMP(LabelRef(l("cols4")))
	Label(l("next4"))
	ADDQ(Imm(16), pa)
	LEAQ(Mem{Base: pw, Index: stride, Scale: 4}, pw)
	SUBQ(Imm(4), rows)
	JMP(LabelRef(l("rows4")))

	Label(l("rows1"))
	TESTQ(rows, rows)
	JZ(LabelRef(l("done")))
	VBROADCASTSS(Mem{Base: pa}, a0)
	XORQ(j, j)
	Label(l("cols1"))
	CMPQ(j, n)
	JGE(LabelRef(l("next1")))
	VMOVUPS(Mem{Base: pc, Index: j, Scale: 4}, cv)
	e.load8(Mem{Base: pw, Index: j, Scale: uint8(e.size)}, t)
	VFMADD231PS(t, a0, cv)
	VMOVUPS(cv, Mem{Base: pc, Index: j, Scale: 4})
	ADDQ(Imm(8), j)
	JMP(LabelRef(l("cols1")))
	Label(l("next1"))
	ADDQ(Imm(4), pa)
	ADDQ(stride, pw)
	DECQ(rows)
	JMP(LabelRef(l("rows1")))

	Label(l("done"))
	VZEROUPPER()
	RET()
}

// dot is Σ_{i<len(a)} a[i]·w[i] for len(a) a multiple of 8, with four accumulators over steps of
// 32 and one over steps of 8, added in a fixed order.
func dot(e elem) {
	name := "dot" + e.suffix + "AVX2"
	TEXT(name, NOSPLIT, fmt.Sprintf("func(a []float32, w []%s) float32", e.goType))
	Pragma("noescape")
	Doc(name + " returns Σ a[i]·w[i] over len(a), a multiple of 8.")
	pa := Load(Param("a").Base(), GP64())
	n := Load(Param("a").Len(), GP64())
	pw := Load(Param("w").Base(), GP64())
	j := GP64()
	XORQ(j, j)
	acc := []VecVirtual{YMM(), YMM(), YMM(), YMM()}
	for _, y := range acc {
		VXORPS(y, y, y)
	}
	t := YMM()
	l := func(s string) string { return name + "_" + s }
	end32 := GP64()
	MOVQ(n, end32)
	ANDQ(I32(-32), end32)
	Label(l("loop32"))
	CMPQ(j, end32)
	JGE(LabelRef(l("loop8")))
	for u := range acc {
		e.load8(Mem{Base: pw, Index: j, Scale: uint8(e.size), Disp: 8 * u * e.size}, t)
		VFMADD231PS(Mem{Base: pa, Index: j, Scale: 4, Disp: 32 * u}, t, acc[u])
	}
	ADDQ(Imm(32), j)
	JMP(LabelRef(l("loop32")))
	Label(l("loop8"))
	CMPQ(j, n)
	JGE(LabelRef(l("reduce")))
	e.load8(Mem{Base: pw, Index: j, Scale: uint8(e.size)}, t)
	VFMADD231PS(Mem{Base: pa, Index: j, Scale: 4}, t, acc[0])
	ADDQ(Imm(8), j)
	JMP(LabelRef(l("loop8")))
	Label(l("reduce"))
	VADDPS(acc[1], acc[0], acc[0])
	VADDPS(acc[3], acc[2], acc[2])
	VADDPS(acc[2], acc[0], acc[0])
	hi := XMM()
	VEXTRACTF128(Imm(1), acc[0], hi)
	lo := acc[0].AsX()
	VADDPS(hi, lo, lo)
	VHADDPS(lo, lo, lo)
	VHADDPS(lo, lo, lo)
	VZEROUPPER()
	Store(lo, ReturnIndex(0))
	RET()
}

func log2(n int) int {
	r := 0
	for n > 1 {
		n >>= 1
		r++
	}
	return r
}

// widenI8 is dst[i] = float32(q[i])·scale[i] for i < len(dst), a multiple of 8: the GEMM's
// packing of an int8 weight panel.
func widenI8() {
	TEXT("widenI8AVX2", NOSPLIT, "func(dst []float32, q []int8, scale []float32)")
	Pragma("noescape")
	Doc("widenI8AVX2 sets dst[i] = float32(q[i])·scale[i] for i < len(dst), a multiple of 8.")
	pd := Load(Param("dst").Base(), GP64())
	n := Load(Param("dst").Len(), GP64())
	pq := Load(Param("q").Base(), GP64())
	ps := Load(Param("scale").Base(), GP64())
	j := GP64()
	XORQ(j, j)
	t := YMM()
	Label("widenI8_loop")
	CMPQ(j, n)
	JGE(LabelRef("widenI8_done"))
	VPMOVSXBD(Mem{Base: pq, Index: j, Scale: 1}, t)
	VCVTDQ2PS(t, t)
	VMULPS(Mem{Base: ps, Index: j, Scale: 4}, t, t)
	VMOVUPS(t, Mem{Base: pd, Index: j, Scale: 4})
	ADDQ(Imm(8), j)
	JMP(LabelRef("widenI8_loop"))
	Label("widenI8_done")
	VZEROUPPER()
	RET()
}

// widenF16 is dst[i] = float32(h[i]) for i < len(dst), a multiple of 8.
func widenF16() {
	TEXT("widenF16AVX2", NOSPLIT, "func(dst []float32, h []uint16)")
	Pragma("noescape")
	Doc("widenF16AVX2 sets dst[i] to the half-precision value h[i] for i < len(dst), a multiple of 8.")
	pd := Load(Param("dst").Base(), GP64())
	n := Load(Param("dst").Len(), GP64())
	ph := Load(Param("h").Base(), GP64())
	j := GP64()
	XORQ(j, j)
	t := YMM()
	Label("widenF16_loop")
	CMPQ(j, n)
	JGE(LabelRef("widenF16_done"))
	VCVTPH2PS(Mem{Base: ph, Index: j, Scale: 2}, t)
	VMOVUPS(t, Mem{Base: pd, Index: j, Scale: 4})
	ADDQ(Imm(8), j)
	JMP(LabelRef("widenF16_loop"))
	Label("widenF16_done")
	VZEROUPPER()
	RET()
}
