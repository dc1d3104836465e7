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

// gemvPrefetch is how far ahead (bytes) the decode products (gemvPanelRows, dotRows) prefetch
// their weight stream.
const gemvPrefetch = 1024

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
	gemm6x16(false)
	gemm6x16(true)
	gemm6x64(false)
	gemm6x64(true)
	for _, e := range elems {
		axpyPanel(e)
		for _, r := range []int{1, 2, 3} {
			gemvPanelRows(e, r)
		}
		for _, r := range []int{1, 2, 3} {
			dotRows(e, r)
		}
		for r := 4; r <= 8; r++ {
			gemvPanelRowsZ(e, r)
		}
	}
	widenI8()
	widenF16()
	silu()
	gelu()
	winogradIn16()
	winogradOut16()
	groupNormStats()
	groupNormAffine()
	winograd43In16()
	winograd43Out16()
	for r := 1; r <= 6; r++ {
		gemmRx64(r)
	}
	geluZ()
	decodeF32()
	vnniKernels()
	prefill2Kernels()
	q8GemmKernels()
	for r := 1; r <= 6; r++ {
		convDirectRx64(r)
	}
	expSubSum()
	winograd43In8x2()
	winograd43Out8x2()
	groupNormAffineSiLUZ()
	Generate()
}

// gemm6x16 is C[0:6,0:16] += Σ_p A[p,0:6]ᵀ·B[p,0:16] over packed panels: a holds k groups of six
// row values (a[p·6+r]), b holds k rows of sixteen (b[p·16+j]). Twelve YMM accumulators hold the
// C tile for the whole K loop; each step is two loads of B, six broadcasts of A and twelve FMAs.
//
// With init, the kernel is gemm6x16InitAVX2(a, b, c, ldc, init): the accumulators start from the
// 16 values of init (the bias, or zeros) in every row instead of from c, so the first depth
// block of a tile neither clears C beforehand nor reads it — for a convolution, whose C rows are
// a whole image apart, that clearing was a tenth of a VAE decode. Both start from the same
// values as "set C to the bias, then accumulate", so the sums have the same bits.
func gemm6x16(init bool) {
	name := "gemm6x16AVX2"
	if init {
		name = "gemm6x16InitAVX2"
		TEXT(name, NOSPLIT, "func(a, b, c []float32, ldc int, init []float32)")
		Pragma("noescape")
		Doc(name + " sets the 6×16 tile of c (row stride ldc) to init[0:16] in every row plus the product of packed panels a (k×6) and b (k×16); k = len(b)/16.")
	} else {
		TEXT(name, NOSPLIT, "func(a, b, c []float32, ldc int)")
		Pragma("noescape")
		Doc(name + " adds the product of packed panels a (k×6) and b (k×16) to the 6×16 tile of c with row stride ldc; k = len(b)/16.")
	}
	pa := Load(Param("a").Base(), GP64())
	pb := Load(Param("b").Base(), GP64())
	k := Load(Param("b").Len(), GP64())
	SHRQ(Imm(4), k)
	rows := tileRows()
	var acc [6][2]VecVirtual
	var pi Register
	if init {
		pi = Load(Param("init").Base(), GP64())
	}
	for r := range acc {
		for h := range acc[r] {
			acc[r][h] = YMM()
			if init {
				VMOVUPS(Mem{Base: pi, Disp: 32 * h}, acc[r][h])
			} else {
				VMOVUPS(rows[r].Offset(32*h), acc[r][h])
			}
		}
	}
	b0, b1, av := YMM(), YMM(), YMM()
	l := func(s string) string { return name + "_" + s }
	Label(l("loop"))
	TESTQ(k, k)
	JZ(LabelRef(l("done")))
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
	JMP(LabelRef(l("loop")))
	Label(l("done"))
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

// reduce4 adds dot's four accumulators in its fixed order and returns the sum in the low lane of
// the XMM register it returns (acc[0]'s).
func reduce4(acc []VecVirtual) Register {
	VADDPS(acc[1], acc[0], acc[0])
	VADDPS(acc[3], acc[2], acc[2])
	VADDPS(acc[2], acc[0], acc[0])
	hi := XMM()
	VEXTRACTF128(Imm(1), acc[0], hi)
	lo := acc[0].AsX()
	VADDPS(hi, lo, lo)
	VHADDPS(lo, lo, lo)
	VHADDPS(lo, lo, lo)
	return lo
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

// gemvPanelRows is y[16i:16i+16] = Σ_p a[i·lda+p]·w[p·16 : p·16+16] for r rows of a (row i at
// a[i·lda:]) over one packed 16-column panel of a weight (its K rows contiguous): the decode
// product reads one sequential stream and keeps the sums in registers, and a batch reads the
// panel once for r rows instead of r times. Even depth steps go to one pair of accumulators, odd
// ones to another (short FMA latency chains), an odd last step to the first pair, the pairs
// added at the end: the same for every r, so a row computed in a batch has the bits of the row
// alone. r ≤ 3 keeps 4r accumulators, the two weight vectors and one broadcast within the 16 YMM
// registers. r = 1 is gemvPanel<E>AVX2(y, a, w), without lda.
func gemvPanelRows(e elem, r int) {
	name := fmt.Sprintf("gemvPanel%sx%dAVX2", e.suffix, r)
	sig := fmt.Sprintf("func(y, a []float32, lda int, w []%s)", e.goType)
	doc := fmt.Sprintf("%s sets y[16i:16i+16] = Σ_p a[i·lda+p]·w[16p:16p+16] for i < %d, p < len(w)/16, bit-identical to gemvPanel%sAVX2 per row.", name, r, e.suffix)
	if r == 1 {
		name = "gemvPanel" + e.suffix + "AVX2"
		sig = fmt.Sprintf("func(y, a []float32, w []%s)", e.goType)
		doc = name + " sets y[0:16] = Σ_p a[p]·w[16p:16p+16] for p < len(w)/16."
	}
	TEXT(name, NOSPLIT, sig)
	Pragma("noescape")
	Doc(doc)
	py := Load(Param("y").Base(), GP64())
	pa := Load(Param("a").Base(), GP64())
	var lda Register
	if r > 1 {
		lda = Load(Param("lda"), GP64())
		SHLQ(Imm(2), lda)
	}
	k := Load(Param("w").Len(), GP64())
	SHRQ(Imm(4), k)
	pw := Load(Param("w").Base(), GP64())
	rows := []Mem{{Base: pa}}
	if r > 1 {
		rows = append(rows, Mem{Base: pa, Index: lda, Scale: 1}, Mem{Base: pa, Index: lda, Scale: 2})
	}
	rows = rows[:r]
	acc := make([][4]VecVirtual, r)
	for i := range acc {
		for h := range acc[i] {
			acc[i][h] = YMM()
			VXORPS(acc[i][h], acc[i][h], acc[i][h])
		}
	}
	w0, w1, b := YMM(), YMM(), YMM()
	l := func(s string) string { return name + "_" + s }
	row := 16 * e.size
	// step does one depth step: the weight row at disp, a's element at adisp, into pair h.
	step := func(disp, adisp, h int) {
		e.load8(Mem{Base: pw, Disp: disp}, w0)
		e.load8(Mem{Base: pw, Disp: disp + 8*e.size}, w1)
		for i := range acc {
			VBROADCASTSS(rows[i].Offset(adisp), b)
			VFMADD231PS(w0, b, acc[i][h])
			VFMADD231PS(w1, b, acc[i][h+1])
		}
	}
	panelDepthLoop(l, k, pw, pa, row, func(disp, adisp, odd int) { step(disp, adisp, 2*odd) })
	for i := range acc {
		VADDPS(acc[i][2], acc[i][0], acc[i][0])
		VADDPS(acc[i][3], acc[i][1], acc[i][1])
		VMOVUPS(acc[i][0], Mem{Base: py, Disp: 64 * i})
		VMOVUPS(acc[i][1], Mem{Base: py, Disp: 64*i + 32})
	}
	VZEROUPPER()
	RET()
}

// panelDepthLoop emits the depth loop the panel kernels share: k steps over a panel of row
// bytes per step at pw, two per iteration (step(…, odd=0) then step(…, odd=1), a's offset
// advanced by 8 bytes in adv), an odd last step as step(…, 0), ending at label "done". It
// prefetches gemvPrefetch bytes ahead of the stream (one line per 64 bytes an iteration reads):
// one sequential stream per core is latency-bound on the hardware prefetcher alone. It reads
// past the panel's end at the last steps; prefetches never fault.
func panelDepthLoop(l func(string) string, k, pw, adv Register, row int, step func(disp, adisp, odd int)) {
	Label(l("loop2"))
	CMPQ(k, Imm(2))
	JL(LabelRef(l("tail")))
	for off := 0; off < 2*row; off += 64 {
		prefetch(Mem{Base: pw, Disp: prefetchDist + off})
	}
	step(0, 0, 0)
	step(row, 4, 1)
	ADDQ(Imm(8), adv)
	ADDQ(Imm(uint64(2*row)), pw)
	SUBQ(Imm(2), k)
	JMP(LabelRef(l("loop2")))
	Label(l("tail"))
	TESTQ(k, k)
	JZ(LabelRef(l("done")))
	step(0, 0, 0)
	Label(l("done"))
}

// gemvPanelRowsZ is gemvPanelRows for r = 4…8 rows with AVX-512 (32 ZMM registers): one ZMM
// holds a panel row's 16 columns, so a row needs two accumulators (even and odd depth steps)
// where the YMM kernels need four, and a pass over the panel serves up to eight rows. Every lane
// sees the same operations in the same order as in gemvPanel<E>AVX2 (even steps into the first
// accumulator, odd into the second, an odd last step into the first, the two added at the end),
// so a row has the same bits as alone.
func gemvPanelRowsZ(e elem, r int) {
	name := fmt.Sprintf("gemvPanel%sx%dAVX512", e.suffix, r)
	TEXT(name, NOSPLIT, fmt.Sprintf("func(y, a []float32, lda int, w []%s)", e.goType))
	Pragma("noescape")
	Doc(fmt.Sprintf("%s sets y[16i:16i+16] = Σ_p a[i·lda+p]·w[16p:16p+16] for i < %d, p < len(w)/16, bit-identical to gemvPanel%sAVX2 per row.", name, r, e.suffix))
	py := Load(Param("y").Base(), GP64())
	pa := Load(Param("a").Base(), GP64())
	lda := Load(Param("lda"), GP64())
	SHLQ(Imm(2), lda)
	k := Load(Param("w").Len(), GP64())
	SHRQ(Imm(4), k)
	pw := Load(Param("w").Base(), GP64())
	rows := []Register{pa}
	for i := 1; i < r; i++ {
		q := GP64()
		LEAQ(Mem{Base: rows[i-1], Index: lda, Scale: 1}, q)
		rows = append(rows, q)
	}
	j := GP64() // byte offset into every row of a
	XORQ(j, j)
	acc := make([][2]VecVirtual, r)
	for i := range acc {
		for h := range acc[i] {
			acc[i][h] = ZMM()
			VXORPS(acc[i][h], acc[i][h], acc[i][h])
		}
	}
	wv, b := ZMM(), ZMM()
	l := func(s string) string { return name + "_" + s }
	row := 16 * e.size
	load16 := func(m Mem) {
		switch e.size {
		case 4:
			VMOVUPS(m, wv)
		case 1:
			VPMOVSXBD(m, wv)
			VCVTDQ2PS(wv, wv)
		case 2:
			VCVTPH2PS(m, wv)
		}
	}
	step := func(disp, adisp, h int) {
		load16(Mem{Base: pw, Disp: disp})
		for i := range acc {
			VBROADCASTSS(Mem{Base: rows[i], Index: j, Scale: 1, Disp: adisp}, b)
			VFMADD231PS(wv, b, acc[i][h])
		}
	}
	panelDepthLoop(l, k, pw, j, row, step)
	for i := range acc {
		VADDPS(acc[i][1], acc[i][0], acc[i][0])
		VMOVUPS(acc[i][0], Mem{Base: py, Disp: 64 * i})
	}
	VZEROUPPER()
	RET()
}

// dotRows is s[i] = Σ_j a[i·lda+j]·w[j] for r rows of a (row i at a[i·lda:]) against one
// weight row w, len(w) a multiple of 8: four accumulators per row over steps of 32 and the first
// over the steps of 8 left, added in a fixed order (reduce4) — the same for every r, so a batched
// row has the bits of the row alone, and the weight row is loaded once for r rows. r = 1 is
// dot<E>AVX2(a, w) float32 over len(a).
func dotRows(e elem, r int) {
	name := fmt.Sprintf("dot%sx%dAVX2", e.suffix, r)
	single := r == 1 && !dotRowsOne
	if single {
		name = "dot" + e.suffix + "AVX2"
		TEXT(name, NOSPLIT, fmt.Sprintf("func(a []float32, w []%s) float32", e.goType))
		Pragma("noescape")
		Doc(name + " returns Σ a[i]·w[i] over len(a), a multiple of 8.")
	} else {
		TEXT(name, NOSPLIT, fmt.Sprintf("func(s []float32, lds int, a []float32, lda int, w []%s, ldw, n, rows int)", e.goType))
		Pragma("noescape")
		Doc(fmt.Sprintf("%s sets s[i·lds+x] = Σ_{j<n} a[i·lda+j]·w[x·ldw+j] for i < %d, x < rows (n a multiple of 8), bit-identical to dot%sAVX2 per row.", name, r, e.suffix))
	}
	var ps, n, lds, ldw, rows Register
	pa := Load(Param("a").Base(), GP64())
	pr := []Register{pa}
	if single {
		n = Load(Param("a").Len(), GP64())
	} else {
		ps = Load(Param("s").Base(), GP64())
		lds = Load(Param("lds"), GP64())
		SHLQ(Imm(2), lds)
		lda := Load(Param("lda"), GP64())
		SHLQ(Imm(2), lda)
		n = Load(Param("n"), GP64())
		ldw = Load(Param("ldw"), GP64())
		if e.size > 1 {
			SHLQ(Imm(uint64(log2(e.size))), ldw)
		}
		rows = Load(Param("rows"), GP64())
		for i := 1; i < r; i++ {
			q := GP64()
			LEAQ(Mem{Base: pr[i-1], Index: lda, Scale: 1}, q)
			pr = append(pr, q)
		}
	}
	pw := Load(Param("w").Base(), GP64())
	l := func(s string) string { return name + "_" + s }
	if !single {
		Label(l("row"))
		TESTQ(rows, rows)
		JZ(LabelRef(l("done")))
	}
	j := GP64()
	XORQ(j, j)
	acc := make([][4]VecVirtual, r)
	for i := range acc {
		for u := range acc[i] {
			acc[i][u] = YMM()
			VXORPS(acc[i][u], acc[i][u], acc[i][u])
		}
	}
	t := YMM()
	end32 := GP64()
	MOVQ(n, end32)
	ANDQ(I32(-32), end32)
	Label(l("loop32"))
	CMPQ(j, end32)
	JGE(LabelRef(l("loop8")))
	for off := 0; off < 32*e.size; off += 64 {
		prefetch(Mem{Base: pw, Index: j, Scale: uint8(e.size), Disp: prefetchDist + off})
	}
	for u := 0; u < 4; u++ {
		e.load8(Mem{Base: pw, Index: j, Scale: uint8(e.size), Disp: 8 * u * e.size}, t)
		for i := range acc {
			VFMADD231PS(Mem{Base: pr[i], Index: j, Scale: 4, Disp: 32 * u}, t, acc[i][u])
		}
	}
	ADDQ(Imm(32), j)
	JMP(LabelRef(l("loop32")))
	Label(l("loop8"))
	CMPQ(j, n)
	JGE(LabelRef(l("reduce")))
	e.load8(Mem{Base: pw, Index: j, Scale: uint8(e.size)}, t)
	for i := range acc {
		VFMADD231PS(Mem{Base: pr[i], Index: j, Scale: 4}, t, acc[i][0])
	}
	ADDQ(Imm(8), j)
	JMP(LabelRef(l("loop8")))
	Label(l("reduce"))
	if single {
		lo := reduce4(acc[0][:])
		VZEROUPPER()
		Store(lo, ReturnIndex(0))
		RET()
		return
	}
	for i := range acc {
		m := Mem{Base: ps}
		if i > 0 {
			m = Mem{Base: ps, Index: lds, Scale: uint8(i)}
		}
		VMOVSS(reduce4(acc[i][:]), m)
	}
	ADDQ(Imm(4), ps)
	ADDQ(ldw, pw)
	DECQ(rows)
	JMP(LabelRef(l("row")))
	Label(l("done"))
	VZEROUPPER()
	RET()
}

// tileRows loads parameters c and ldc and returns the addresses of the six rows of a C tile.
func tileRows() []Mem {
	pc := Load(Param("c").Base(), GP64())
	ldc := Load(Param("ldc"), GP64())
	SHLQ(Imm(2), ldc)
	p3 := GP64()
	LEAQ(Mem{Base: pc, Index: ldc, Scale: 2}, p3)
	ADDQ(ldc, p3)
	return []Mem{
		{Base: pc}, {Base: pc, Index: ldc, Scale: 1}, {Base: pc, Index: ldc, Scale: 2},
		{Base: p3}, {Base: p3, Index: ldc, Scale: 1}, {Base: p3, Index: ldc, Scale: 2},
	}
}

// gemm6x64 is the AVX-512 micro-kernel: C[0:6,0:64] += Σ_p A[p,0:6]ᵀ·B[p,0:64] over one packed
// A strip (a[p·6+r]) and four packed B panels of 16 columns, panel q at b[q·bs:] (b[q·bs+p·16+j]).
// 24 ZMM accumulators hold the tile; each depth step is four ZMM loads of B, six broadcasts of A
// and 24 FMAs. Every C element is one FMA chain over p in order, as in gemm6x16, so the two
// kernels give the same bits and may share a product. With init the accumulators start from
// init[0:64] in every row instead of from C (see gemm6x16).
func gemm6x64(init bool) {
	name := "gemm6x64AVX512"
	sig := "func(a, b []float32, bs int, c []float32, ldc int)"
	doc := name + " adds the product of a packed strip a (k×6) and four packed panels b[q·bs:] (k×16 each) to the 6×64 tile of c with row stride ldc; k = len(a)/6."
	if init {
		name = "gemm6x64InitAVX512"
		sig = "func(a, b []float32, bs int, c []float32, ldc int, init []float32)"
		doc = name + " sets the 6×64 tile of c (row stride ldc) to init[0:64] in every row plus the product of a packed strip a (k×6) and four packed panels b[q·bs:] (k×16 each); k = len(a)/6."
	}
	TEXT(name, NOSPLIT, sig)
	Pragma("noescape")
	Doc(doc)
	pa := Load(Param("a").Base(), GP64())
	end := Load(Param("a").Len(), GP64())
	SHLQ(Imm(2), end)
	ADDQ(pa, end)
	pb0 := Load(Param("b").Base(), GP64())
	bs := Load(Param("bs"), GP64())
	SHLQ(Imm(2), bs)
	pb1, pb2, pb3 := GP64(), GP64(), GP64()
	LEAQ(Mem{Base: pb0, Index: bs, Scale: 1}, pb1)
	LEAQ(Mem{Base: pb0, Index: bs, Scale: 2}, pb2)
	LEAQ(Mem{Base: pb1, Index: bs, Scale: 2}, pb3)
	rows := tileRows()
	var pi Register
	if init {
		pi = Load(Param("init").Base(), GP64())
	}
	var acc [6][4]VecVirtual
	for r := range acc {
		for q := range acc[r] {
			acc[r][q] = ZMM()
			if init {
				VMOVUPS(Mem{Base: pi, Disp: 64 * q}, acc[r][q])
			} else {
				VMOVUPS(rows[r].Offset(64*q), acc[r][q])
			}
		}
	}
	pbs := []Register{pb0, pb1, pb2, pb3}
	bq := []VecVirtual{ZMM(), ZMM(), ZMM(), ZMM()}
	av := ZMM()
	l := func(s string) string { return name + "_" + s }
	Label(l("loop"))
	CMPQ(pa, end)
	JAE(LabelRef(l("done")))
	for q := range bq {
		VMOVUPS(Mem{Base: pbs[q]}, bq[q])
	}
	for r := range acc {
		VBROADCASTSS(Mem{Base: pa, Disp: 4 * r}, av)
		for q := range bq {
			VFMADD231PS(bq[q], av, acc[r][q])
		}
	}
	ADDQ(Imm(24), pa)
	for q := range pbs {
		ADDQ(Imm(64), pbs[q])
	}
	JMP(LabelRef(l("loop")))
	Label(l("done"))
	for r := range acc {
		for q := range acc[r] {
			VMOVUPS(acc[r][q], rows[r].Offset(64*q))
		}
	}
	VZEROUPPER()
	RET()
}

// indices returns sixteen int32 lane indices in read-only data, a 512-bit memory operand.
func indices(name string, f func(i int) int) Mem {
	m := GLOBL(name, RODATA|NOPTR)
	for i := 0; i < 16; i++ {
		DATA(4*i, U32(uint32(f(i))))
	}
	return m
}

// winogradIn16 is the Winograd F(2×2,3×3) input transform of sixteen neighbouring tiles of one
// channel: with d the 4×34 patch r[i·ld+x] (i < 4, x < 34; r must be readable to x = 33 only),
// it writes V[ξ] = (Bᵀ d B)[ξ] of tile t (columns 2t..2t+3) to v[ξ·stride+t], ξ < 16, t < 16,
// Bᵀ = [[1,0,−1,0],[0,1,1,0],[0,−1,1,0],[0,1,0,−1]]. Bᵀ runs down the rows on whole vectors
// (columns 0–15, 16–31 and, shifted by two, 2–17, 18–33); VPERMT2PS then splits each pair into
// the even and odd columns the tiles take.
func winogradIn16() {
	TEXT("winogradIn16AVX512", NOSPLIT, "func(v []float32, stride int, r []float32, ld int)")
	Pragma("noescape")
	Doc("winogradIn16AVX512 writes the Winograd F(2×2,3×3) input transform of 16 tiles (4×34 patch r[i·ld+x]) to v[ξ·stride+t], ξ, t < 16.")
	pv, stride := Load(Param("v").Base(), GP64()), loadStride("stride")
	pr, ld := Load(Param("r").Base(), GP64()), loadStride("ld")
	even := ZMM()
	odd := ZMM()
	VMOVDQU32(indices("wino_even", func(i int) int { return 2 * i }), even)
	VMOVDQU32(indices("wino_odd", func(i int) int { return 2*i + 1 }), odd)
	// Row pointers.
	rp := [4]Register{pr, GP64(), GP64(), GP64()}
	LEAQ(Mem{Base: pr, Index: ld, Scale: 1}, rp[1])
	LEAQ(Mem{Base: pr, Index: ld, Scale: 2}, rp[2])
	LEAQ(Mem{Base: rp[1], Index: ld, Scale: 2}, rp[3])
	// c[k][h]: Bᵀ applied down the rows at column offset 0, 16, 2, 18 (h).
	offs := []int{0, 16, 2, 18}
	var c [4][4]VecVirtual
	for h, off := range offs {
		var x [4]VecVirtual
		for i := range x {
			x[i] = ZMM()
			VMOVUPS(Mem{Base: rp[i], Disp: 4 * off}, x[i])
		}
		for k := range c {
			c[k][h] = ZMM()
		}
		VSUBPS(x[2], x[0], c[0][h]) // d0 − d2
		VADDPS(x[2], x[1], c[1][h]) // d1 + d2
		VSUBPS(x[1], x[2], c[2][h]) // d2 − d1
		VSUBPS(x[3], x[1], c[3][h]) // d1 − d3
	}
	// Per k: columns q0 = x[2t], q1 = x[2t+1] from (0,16); q2 = x[2t+2], q3 = x[2t+3] from (2,18).
	pout := GP64()
	MOVQ(pv, pout)
	for k := 0; k < 4; k++ {
		q := [4]VecVirtual{ZMM(), ZMM(), ZMM(), ZMM()}
		VMOVAPS(c[k][0], q[0])
		VPERMT2PS(c[k][1], even, q[0])
		VMOVAPS(c[k][0], q[1])
		VPERMT2PS(c[k][1], odd, q[1])
		VMOVAPS(c[k][2], q[2])
		VPERMT2PS(c[k][3], even, q[2])
		VMOVAPS(c[k][2], q[3])
		VPERMT2PS(c[k][3], odd, q[3])
		o := ZMM()
		VSUBPS(q[2], q[0], o) // q0 − q2
		VMOVUPS(o, Mem{Base: pout})
		ADDQ(stride, pout)
		VADDPS(q[2], q[1], o) // q1 + q2
		VMOVUPS(o, Mem{Base: pout})
		ADDQ(stride, pout)
		VSUBPS(q[1], q[2], o) // q2 − q1
		VMOVUPS(o, Mem{Base: pout})
		ADDQ(stride, pout)
		VSUBPS(q[3], q[1], o) // q1 − q3
		VMOVUPS(o, Mem{Base: pout})
		ADDQ(stride, pout)
	}
	VZEROUPPER()
	RET()
}

// winogradOut16 is the Winograd F(2×2,3×3) output transform of sixteen neighbouring tiles of
// one output channel: from M[ξ] at m[ξ·stride+t] (ξ, t < 16) it writes Y = Aᵀ M A + bias[0]
// with Aᵀ = [[1,1,1,0],[0,1,−1,−1]], the top output row of tile t at y0[2t:2t+2] and the bottom
// one at y1[2t:2t+2]. The even and odd output columns are interleaved with VPERMT2PS.
func winogradOut16() {
	TEXT("winogradOut16AVX512", NOSPLIT, "func(y0, y1, m []float32, stride int, bias []float32)")
	Pragma("noescape")
	Doc("winogradOut16AVX512 writes the Winograd F(2×2,3×3) output transform of 16 tiles (M[ξ] at m[ξ·stride+t]) plus bias[0] to y0[0:32] and y1[0:32].")
	py0 := Load(Param("y0").Base(), GP64())
	py1 := Load(Param("y1").Base(), GP64())
	pm, stride := Load(Param("m").Base(), GP64()), loadStride("stride")
	pb := Load(Param("bias").Base(), GP64())
	bv := ZMM()
	VBROADCASTSS(Mem{Base: pb}, bv)
	var mv [4][4]VecVirtual
	for i := range mv {
		for j := range mv[i] {
			mv[i][j] = ZMM()
			VMOVUPS(Mem{Base: pm}, mv[i][j])
			ADDQ(stride, pm)
		}
	}
	// Aᵀ·M: a[j] = m0j + m1j + m2j (top), b[j] = m1j − m2j − m3j (bottom).
	var a, b [4]VecVirtual
	for j := 0; j < 4; j++ {
		a[j], b[j] = ZMM(), ZMM()
		VADDPS(mv[1][j], mv[0][j], a[j])
		VADDPS(mv[2][j], a[j], a[j])
		VSUBPS(mv[2][j], mv[1][j], b[j])
		VSUBPS(mv[3][j], b[j], b[j])
	}
	lo, hi := ZMM(), ZMM()
	VMOVDQU32(indices("wino_lo", func(i int) int { return i/2 + 16*(i%2) }), lo)
	VMOVDQU32(indices("wino_hi", func(i int) int { return 8 + i/2 + 16*(i%2) }), hi)
	for r, src := range [2][4]VecVirtual{a, b} {
		e, o := ZMM(), ZMM()
		// e = s0 + s1 + s2 + bias, o = s1 − s2 − s3 + bias
		VADDPS(src[1], src[0], e)
		VADDPS(src[2], e, e)
		VADDPS(bv, e, e)
		VSUBPS(src[2], src[1], o)
		VSUBPS(src[3], o, o)
		VADDPS(bv, o, o)
		l, h := ZMM(), ZMM()
		VMOVAPS(e, l)
		VPERMT2PS(o, lo, l)
		VMOVAPS(e, h)
		VPERMT2PS(o, hi, h)
		dst := py0
		if r == 1 {
			dst = py1
		}
		VMOVUPS(l, Mem{Base: dst})
		VMOVUPS(h, Mem{Base: dst, Disp: 64})
	}
	VZEROUPPER()
	RET()
}

// groupNormStats are the two passes of GroupNorm's statistics in float64, four lanes per YMM
// (VCVTPS2PD), two accumulators each: sumF64AVX2 returns Σ x[i] and sumSqDevF64AVX2 returns
// Σ (x[i] − mean)², over len(x), a multiple of 8.
func groupNormStats() {
	for _, dev := range []bool{false, true} {
		name, sig := "sumF64AVX2", "func(x []float32) float64"
		doc := name + " returns Σ x[i] in float64 over len(x), a multiple of 8."
		if dev {
			name, sig = "sumSqDevF64AVX2", "func(x []float32, mean float64) float64"
			doc = name + " returns Σ (x[i] − mean)² in float64 over len(x), a multiple of 8."
		}
		TEXT(name, NOSPLIT, sig)
		Pragma("noescape")
		Doc(doc)
		px := Load(Param("x").Base(), GP64())
		n := Load(Param("x").Len(), GP64())
		var mean VecVirtual
		if dev {
			m := Load(Param("mean"), XMM())
			mean = YMM()
			VBROADCASTSD(m, mean)
		}
		acc := [2]VecVirtual{YMM(), YMM()}
		for _, a := range acc {
			VXORPD(a, a, a)
		}
		j := GP64()
		XORQ(j, j)
		l := func(s string) string { return name + "_" + s }
		Label(l("loop"))
		CMPQ(j, n)
		JGE(LabelRef(l("done")))
		for h, a := range acc {
			d := YMM()
			VCVTPS2PD(Mem{Base: px, Index: j, Scale: 4, Disp: 16 * h}, d)
			if dev {
				VSUBPD(mean, d, d)
				VFMADD231PD(d, d, a)
			} else {
				VADDPD(d, a, a)
			}
		}
		ADDQ(Imm(8), j)
		JMP(LabelRef(l("loop")))
		Label(l("done"))
		VADDPD(acc[1], acc[0], acc[0])
		hi := XMM()
		VEXTRACTF128(Imm(1), acc[0], hi)
		lo := acc[0].AsX()
		VADDPD(hi, lo, lo)
		VHADDPD(lo, lo, lo)
		Store(lo, ReturnIndex(0))
		VZEROUPPER()
		RET()
	}
}

// groupNormAffine is dst[i] = (x[i] − p[0] − p[1])·p[2] + p[3] for i < len(dst), a multiple of
// 8: GroupNorm's normalization with the float64 mean split in two float32s (p[0] = float32(μ),
// p[1] = float32(μ − p[0])), so that x − p[0] is exact for x near μ and a large mean does not
// cancel the deviation; p[2] = γ/σ, p[3] = β.
func groupNormAffine() {
	TEXT("groupNormAffineAVX2", NOSPLIT, "func(dst, x, p []float32)")
	Pragma("noescape")
	Doc("groupNormAffineAVX2 sets dst[i] = (x[i] − p[0] − p[1])·p[2] + p[3] for i < len(dst), a multiple of 8.")
	pd, n, px, c := affineParams(YMM)
	j := GP64()
	XORQ(j, j)
	Label("gnaff_loop")
	CMPQ(j, n)
	JGE(LabelRef("gnaff_done"))
	x := YMM()
	VMOVUPS(Mem{Base: px, Index: j, Scale: 4}, x)
	VSUBPS(c[0], x, x)
	VSUBPS(c[1], x, x)
	VFMADD213PS(c[3], c[2], x) // x·p[2] + p[3]
	VMOVUPS(x, Mem{Base: pd, Index: j, Scale: 4})
	ADDQ(Imm(8), j)
	JMP(LabelRef("gnaff_loop"))
	Label("gnaff_done")
	VZEROUPPER()
	RET()
}
