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
	"math"

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
		gemvPanel(e)
	}
	widenI8()
	widenF16()
	silu()
	gelu()
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

// constant returns eight copies of the float32 v (or of the bits of an int32) in read-only data,
// usable as a 256-bit memory operand.
func constant(name string, v any) Mem {
	m := GLOBL(name, RODATA|NOPTR)
	for i := 0; i < 8; i++ {
		switch v := v.(type) {
		case float32:
			DATA(4*i, U32(math.Float32bits(v))) // bits: the assembler's float DATA is float64-only
		case uint32:
			DATA(4*i, U32(v))
		}
	}
	return m
}

// expConsts are Cephes' expf: exp(x) = 2^n·(1 + r + r²·P(r)), n = round(x·log2 e),
// r = x − n·ln 2 (ln 2 split in two for exactness), |r| ≤ ln2/2; about 1 ulp in float32.
type expConsts struct {
	lo, hi, log2e, ln2hi, ln2lo, one, bias Mem
	p                                      [6]Mem
}

var ec *expConsts

func expConstants() *expConsts {
	if ec != nil {
		return ec
	}
	ec = &expConsts{
		lo: constant("exp_lo", float32(-87.3)), hi: constant("exp_hi", float32(88.3)),
		log2e: constant("exp_log2e", float32(1.44269504088896341)),
		ln2hi: constant("exp_ln2hi", float32(0.693359375)), ln2lo: constant("exp_ln2lo", float32(-2.12194440e-4)),
		one: constant("exp_one", float32(1)), bias: constant("exp_bias", uint32(127)),
	}
	for i, c := range []float32{1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1} {
		ec.p[i] = constant(fmt.Sprintf("exp_p%d", i), c)
	}
	return ec
}

// expPS returns exp(v) lane-wise, v clamped to [−87.3, 88.3] so that 2^n stays a normal float
// (exp(−87.3) ≈ 1.2e-38, exp(88.3) ≈ 2.2e38). v is overwritten.
func expPS(v VecVirtual) VecVirtual {
	c := expConstants()
	VMAXPS(c.lo, v, v)
	VMINPS(c.hi, v, v)
	n, r, p, r2 := YMM(), YMM(), YMM(), YMM()
	VMULPS(c.log2e, v, n)
	VROUNDPS(Imm(0), n, n) // to nearest
	VMOVAPS(v, r)
	VFNMADD231PS(c.ln2hi, n, r) // r −= n·ln2hi
	VFNMADD231PS(c.ln2lo, n, r) // r −= n·ln2lo
	VMOVUPS(c.p[0], p)
	for _, k := range c.p[1:] {
		VFMADD213PS(k, r, p) // p = p·r + k
	}
	VMULPS(r, r, r2)
	VFMADD213PS(r, r2, p) // p = p·r² + r
	VADDPS(c.one, p, p)
	VCVTPS2DQ(n, n)
	VPADDD(c.bias, n, n)
	VPSLLD(Imm(23), n, n) // 2^n as float bits
	VMULPS(n, p, p)
	return p
}

// silu is dst[i] = x[i]/(1+exp(−x[i])) for i < len(dst), a multiple of 8; dst may alias x.
func silu() {
	TEXT("siluAVX2", NOSPLIT, "func(dst, x []float32)")
	Pragma("noescape")
	Doc("siluAVX2 sets dst[i] = x[i]/(1+exp(−x[i])) for i < len(dst), a multiple of 8.")
	pd := Load(Param("dst").Base(), GP64())
	n := Load(Param("dst").Len(), GP64())
	px := Load(Param("x").Base(), GP64())
	j := GP64()
	XORQ(j, j)
	sign := constant("silu_sign", uint32(0x80000000))
	Label("silu_loop")
	CMPQ(j, n)
	JGE(LabelRef("silu_done"))
	x, v := YMM(), YMM()
	VMOVUPS(Mem{Base: px, Index: j, Scale: 4}, x)
	VXORPS(sign, x, v)
	e := expPS(v)
	VADDPS(expConstants().one, e, e)
	VDIVPS(e, x, x)
	VMOVUPS(x, Mem{Base: pd, Index: j, Scale: 4})
	ADDQ(Imm(8), j)
	JMP(LabelRef("silu_loop"))
	Label("silu_done")
	VZEROUPPER()
	RET()
}

// gelu is GPT-2's gelu_new, dst[i] = ½x(1 + tanh(√(2/π)(x + 0.044715x³))), with
// tanh(u) = 1 − 2/(exp(2u)+1), for i < len(dst), a multiple of 8; dst may alias x.
func gelu() {
	TEXT("geluAVX2", NOSPLIT, "func(dst, x []float32)")
	Pragma("noescape")
	Doc("geluAVX2 sets dst[i] = gelu_new(x[i]) for i < len(dst), a multiple of 8.")
	pd := Load(Param("dst").Base(), GP64())
	n := Load(Param("dst").Len(), GP64())
	px := Load(Param("x").Base(), GP64())
	j := GP64()
	XORQ(j, j)
	c3 := constant("gelu_c3", float32(0.044715))
	k2 := constant("gelu_2c", float32(2*0.7978845608028654)) // 2·√(2/π): exp takes 2u
	half := constant("gelu_half", float32(0.5))
	two := constant("gelu_two", float32(2))
	Label("gelu_loop")
	CMPQ(j, n)
	JGE(LabelRef("gelu_done"))
	x, v, t := YMM(), YMM(), YMM()
	VMOVUPS(Mem{Base: px, Index: j, Scale: 4}, x)
	VMULPS(x, x, v)
	VMULPS(c3, v, v)     // 0.044715x²
	VFMADD213PS(x, x, v) // x·0.044715x² + x
	VMULPS(k2, v, v)     // 2u
	e := expPS(v)
	VADDPS(expConstants().one, e, e)
	VMOVUPS(two, t)
	VDIVPS(e, t, t) // 2/(e+1)
	u := YMM()
	VMOVUPS(two, u)
	VSUBPS(t, u, u) // 2 − 2/(e+1) = 1 + tanh(u)
	VMULPS(half, x, x)
	VMULPS(u, x, x)
	VMOVUPS(x, Mem{Base: pd, Index: j, Scale: 4})
	ADDQ(Imm(8), j)
	JMP(LabelRef("gelu_loop"))
	Label("gelu_done")
	VZEROUPPER()
	RET()
}

// gemvPanel is y[0:16] = Σ_{p<len(a)} a[p]·w[p·16 : p·16+16] over one packed 16-column panel of
// a weight (its K rows contiguous): the decode product reads one sequential stream and keeps
// the sums in registers. Two depth steps per iteration feed four accumulators, so the FMA
// latency chains stay short.
func gemvPanel(e elem) {
	name := "gemvPanel" + e.suffix + "AVX2"
	TEXT(name, NOSPLIT, fmt.Sprintf("func(y, a []float32, w []%s)", e.goType))
	Pragma("noescape")
	Doc(name + " sets y[0:16] = Σ_p a[p]·w[16p:16p+16] for p < len(a).")
	py := Load(Param("y").Base(), GP64())
	pa := Load(Param("a").Base(), GP64())
	k := Load(Param("a").Len(), GP64())
	pw := Load(Param("w").Base(), GP64())
	acc := []VecVirtual{YMM(), YMM(), YMM(), YMM()}
	for _, y := range acc {
		VXORPS(y, y, y)
	}
	b0, b1, t := YMM(), YMM(), YMM()
	l := func(s string) string { return name + "_" + s }
	row := 16 * e.size
	Label(l("loop2"))
	CMPQ(k, Imm(2))
	JL(LabelRef(l("tail")))
	VBROADCASTSS(Mem{Base: pa}, b0)
	VBROADCASTSS(Mem{Base: pa, Disp: 4}, b1)
	e.load8(Mem{Base: pw}, t)
	VFMADD231PS(t, b0, acc[0])
	e.load8(Mem{Base: pw, Disp: 8 * e.size}, t)
	VFMADD231PS(t, b0, acc[1])
	e.load8(Mem{Base: pw, Disp: row}, t)
	VFMADD231PS(t, b1, acc[2])
	e.load8(Mem{Base: pw, Disp: row + 8*e.size}, t)
	VFMADD231PS(t, b1, acc[3])
	ADDQ(Imm(8), pa)
	ADDQ(Imm(uint64(2*row)), pw)
	SUBQ(Imm(2), k)
	JMP(LabelRef(l("loop2")))
	Label(l("tail"))
	TESTQ(k, k)
	JZ(LabelRef(l("done")))
	VBROADCASTSS(Mem{Base: pa}, b0)
	e.load8(Mem{Base: pw}, t)
	VFMADD231PS(t, b0, acc[0])
	e.load8(Mem{Base: pw, Disp: 8 * e.size}, t)
	VFMADD231PS(t, b0, acc[1])
	Label(l("done"))
	VADDPS(acc[2], acc[0], acc[0])
	VADDPS(acc[3], acc[1], acc[1])
	VMOVUPS(acc[0], Mem{Base: py})
	VMOVUPS(acc[1], Mem{Base: py, Disp: 32})
	VZEROUPPER()
	RET()
}
