package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/ir"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The AVX512-VNNI decode products over int8 weights with int8 activations (llama.cpp's scheme):
// each activation row is quantized per block of q8Block values of k to int8 with one float32
// scale per block (native/kernels/quant8.go), and a product sums w·q exactly in int32 with
// VPDPBUSD before one float conversion per block. q8Block and the record layout must match
// native/kernels/quant8.go.
const (
	q8Block = 16          // k per activation block
	q8Rec   = q8Block + 8 // bytes per block record: q8Block int8 values, float32 scale, int32 −128·Σq
	q8RecT  = 3 * 64      // bytes per 64 k of a row for dotQ8: 64 int8 values, 16 int32 lane corrections, 16 float32 lane scales
	q8RowsT = 4           // most rows of activations per dotQ8 pass
	dotQ8W  = 4           // weight rows per dotQ8 pass
)

// gemvQ8Prefetch is the weight prefetch of gemvPanelQ8. GPT-2 124M's 48 int8 layer weights in
// panels, one row, two workers (a benchmark of generated variants side by side, four runs of 60
// passes, 2026-12-07): PREFETCHT1 2 KiB ahead read 30.3-32.5 GB/s, PREFETCHT1 4 KiB 29.7-32.2,
// no prefetch 27.9-30.2, PREFETCHT0 2 KiB 25.5-27.7, PREFETCHT0 1 KiB (gemvPrefetch, what the
// kernels had) 25.6-26.7. On one 115 MB matrix and one worker, PREFETCHT0 1 KiB read 26.7-28.4
// GB/s, no prefetch 31.7-33.6, PREFETCHT1 2 KiB 30.7-33.3: lines fetched into L1 ahead of a
// single stream compete with the hardware prefetcher's.
var gemvQ8Prefetch = prefetchSpec{dist: 2048, l2: true}

// q8Perm and q8x80 are the kernels' constants, emitted once: the VPERMB index that gathers a
// depth step's 4 rows × 16 columns into 16 dwords of 4 consecutive k per column (result byte
// 4x+t, column x and depth t, is source byte 16t+x), and 64 bytes of 0x80.
var q8Perm, q8x80 Mem

func vnniKernels() {
	q8Perm = bytes64("q8_perm", func(i int) byte { return byte(16*(i%4) + i/4) })
	q8x80 = bytes64("q8_x80", func(int) byte { return 0x80 })
	for r := 1; r <= 8; r++ {
		gemvPanelQ8(r)
	}
	quantizeQ8()
	for r := 1; r <= q8RowsT; r++ {
		dotQ8(r)
	}
}

// vpdpbusd emits VPDPBUSD (AVX512_VNNI, absent from avo v0.5.0's instruction table):
// acc[i] += Σ_{b<4} u8(u[4i+b])·s8(s[4i+b]) per dword lane i, s a register or, with bcst, one
// dword in memory broadcast to every lane.
func vpdpbusd(s Op, u, acc VecVirtual, bcst bool) {
	inst := &ir.Instruction{
		Opcode:   "VPDPBUSD",
		Operands: []Op{s, u, acc},
		Inputs:   []Op{s, u, acc},
		Outputs:  []Op{acc},
		ISA:      []string{"AVX512_VNNI"},
	}
	if bcst {
		inst.Suffixes = []string{"BCST"}
	}
	Instruction(inst)
}

// activationRows loads the addresses of the r rows of quantized activations, qa[i·lda:].
func activationRows(r int) []Register {
	rows := []Register{Load(Param("qa").Base(), GP64())}
	if r > 1 {
		lda := Load(Param("lda"), GP64())
		for i := 1; i < r; i++ {
			q := GP64()
			LEAQ(Mem{Base: rows[i-1], Index: lda, Scale: 1}, q)
			rows = append(rows, q)
		}
	}
	return rows
}

// bytes64 returns 64 bytes in read-only data, a 512-bit memory operand.
func bytes64(name string, f func(i int) byte) Mem {
	m := GLOBL(name, RODATA|NOPTR)
	for i := 0; i < 64; i++ {
		DATA(i, U8(f(i)))
	}
	return m
}

// gemvPanelQ8 is the quantized-activation decode product for r = 1…8 rows over one packed
// 16-column int8 weight panel (PackPanels' layout: k rows of 16 bytes, contiguous):
//
//	y[16i+x] = Σ_b scale_ib · Σ_{p in block b} q_i[p]·w[16p+x]
//
// with row i's quantized activations in records of q8Rec bytes at qa[i·lda + b·q8Rec:]
// (q8Block int8 values zero-padded, the float32 block scale, the int32 −128·Σq of the block).
//
// The sums are q8PanelSums' (scripts/gen-kernels/q8gemm.go), with even and odd depth steps in two
// accumulators per row; the rows' float accumulators are stored to y.
func gemvPanelQ8(r int) {
	name := fmt.Sprintf("gemvPanelQ8x%dVNNI", r)
	TEXT(name, NOSPLIT, "func(y []float32, qa []byte, lda int, w []int8, blocks, steps int, mask uint64)")
	Pragma("noescape")
	Doc(fmt.Sprintf("%s sets y[16i:16i+16] to the quantized-activation product of %d rows of activation records (qa, row stride lda bytes) and one int8 weight panel w: blocks whole blocks of %d k, then a partial block of steps 4-k steps and a masked last step.", name, r, q8Block))
	// The decode product streams each weight once from memory: prefetched 2 KiB ahead into L2
	// (gemvQ8Prefetch), not 1 KiB ahead into L1 as the prefill product, which reuses its panels.
	defer func(p prefetchSpec) { q8Prefetch = p }(q8Prefetch)
	q8Prefetch = gemvQ8Prefetch
	facc := q8PanelSums(name, r, 2) // two accumulators per row: few rows, short chains
	py := Load(Param("y").Base(), GP64())
	for i := range facc {
		VMOVUPS(facc[i], Mem{Base: py, Disp: 64 * i})
	}
	VZEROUPPER()
	RET()
}

// quantizeQ8 writes blocks whole blocks of q8Block activations as block records (the format of
// native/kernels/quant8.go, which does any partial last block in Go with the same operations):
// amax = the largest |a| taken as the unsigned maximum of the bit patterns of |a| (so a NaN
// wins, then ±Inf), scale = amax/127, q = round-to-nearest-even(a·(127/amax)) (VCVTPS2DQ)
// packed with VPMOVSDB — or q = 0 unless 0 < amax ≤ MaxFloat32 —, and −128·Σq.
func quantizeQ8() {
	TEXT("quantizeQ8AVX512", NOSPLIT, "func(dst []byte, a []float32, blocks int)")
	Pragma("noescape")
	Doc(fmt.Sprintf("quantizeQ8AVX512 writes blocks records of %d int8 activations of a, their float32 scale and −128·Σq to dst.", q8Block))
	pd := Load(Param("dst").Base(), GP64())
	pa := Load(Param("a").Base(), GP64())
	nb := Load(Param("blocks"), GP64())
	absMask, c127 := ZMM(), XMM()
	VPBROADCASTD(constant("q8_abs", uint32(0x7fffffff)).Offset(0), absMask)
	VMOVSS(constant("q8_127", float32(127)).Offset(0), c127)
	const vecs = q8Block / 16
	l := func(s string) string { return "quantizeQ8AVX512_" + s }
	Label(l("block"))
	TESTQ(nb, nb)
	JZ(LabelRef(l("done")))
	v := make([]VecVirtual, vecs)
	m := ZMM()
	for h := range v {
		v[h] = ZMM()
		VMOVUPS(Mem{Base: pa, Disp: 64 * h}, v[h])
		if h == 0 {
			VPANDD(absMask, v[h], m)
		} else {
			t := ZMM()
			VPANDD(absMask, v[h], t)
			VPMAXUD(t, m, m)
		}
	}
	hmax := func(z VecVirtual, op func(a, b, c Op)) Register {
		y := YMM()
		VEXTRACTI64X4(Imm(1), z, y)
		op(y, z.AsY(), y)
		x := XMM()
		VEXTRACTI128(Imm(1), y, x)
		op(x, y.AsX(), x)
		t := XMM()
		VPSHUFD(Imm(0x4e), x, t)
		op(t, x, x)
		VPSHUFD(Imm(0xb1), x, t)
		op(t, x, x)
		return x
	}
	amax := hmax(m, func(a, b, c Op) { VPMAXUD(a, b, c) })
	scale, inv := XMM(), XMM()
	VDIVSS(c127, amax, scale) // amax/127
	VDIVSS(amax, c127, inv)   // 127/amax
	bits := GP32()
	VMOVD(amax, bits)
	DECL(bits)
	CMPL(bits, U32(0x7f7ffffe))
	JBE(LabelRef(l("finite")))
	VXORPS(inv, inv, inv)
	for h := range v {
		VPXORD(v[h], v[h], v[h]) // ±Inf·0 would be NaN
	}
	Label(l("finite"))
	invZ := ZMM()
	VBROADCASTSS(inv, invZ)
	var sum VecVirtual
	for h := range v {
		VMULPS(invZ, v[h], v[h])
		VCVTPS2DQ(v[h], v[h])
		VPMOVSDB(v[h], Mem{Base: pd, Disp: 16 * h})
		if h == 0 {
			sum = v[h]
		} else {
			VPADDD(v[h], sum, sum)
		}
	}
	s := hmax(sum, func(a, b, c Op) { VPADDD(a, b, c) })
	VMOVSS(scale, Mem{Base: pd, Disp: q8Block})
	corr := GP32()
	VMOVD(s, corr)
	SHLL(Imm(7), corr)
	NEGL(corr)
	MOVL(corr, Mem{Base: pd, Disp: q8Block + 4})
	ADDQ(Imm(q8Rec), pd)
	ADDQ(Imm(4*q8Block), pa)
	DECQ(nb)
	JMP(LabelRef(l("block")))
	Label(l("done"))
	VZEROUPPER()
	RET()
}

// dotQ8 is the quantized-activation product against weight rows (the LM head's tied embeddings,
// one output per row of w, k contiguous int8 values each), for r rows of activations:
//
//	y[8x+i] = Σ_{lanes} Σ_g scale_ig[lane] · Σ_{4 k of the lane in 64-k group g} q_i·w_x
//
// Row i's activations are in groups of 64 k at qa[i·lda + g·q8RecT:]: the 64 int8 values, then
// per dword lane (4 consecutive k) −128·Σ of its 4 values, then per lane the scale of the block
// the lane belongs to. Per group, the 64 weight bytes of row x are made unsigned (w+128) and one
// VPDPBUSD per row of activations, started from the lane corrections, leaves each lane's exact
// Σ q·w; it converts to float32 and one FMA with the lane scales adds it to the row's float
// lanes. After the last group the 16 lanes are added in a fixed tree (lane l + lane l+8, then
// +4, +2, +1). A pass takes dotQ8W weight rows (their float chains interleave, and each group of
// activations is loaded once for them), then single rows; every output sees the same operations
// in the same order whatever r and the pass, so a batched row has the bits of the row alone.
// A last partial group is loaded under the byte mask mask.
func dotQ8(r int) {
	name := fmt.Sprintf("dotQ8x%dVNNI", r)
	TEXT(name, NOSPLIT, "func(y []float32, qa []byte, lda int, w []int8, ldw, n, groups int, mask uint64)")
	Pragma("noescape")
	Doc(fmt.Sprintf("%s sets y[8x+i] to the quantized-activation dot product of row i < %d of qa (stride lda bytes) and int8 weight row x < n of w (stride ldw): groups whole groups of 64 k, then one under the byte mask mask when it is non-zero.", name, r))
	rows := activationRows(r)
	py := Load(Param("y").Base(), GP64())
	row := Load(Param("w").Base(), GP64()) // start of weight row x
	nx := Load(Param("n"), GP64())
	ldw := Load(Param("ldw"), GP64())
	c80 := ZMM()
	VMOVDQU64(q8x80, c80)
	l := func(s string) string { return name + "_" + s }
	// pass emits the loop over passes of nw weight rows (nw = dotQ8W, then 1).
	pass := func(nw int, next string) {
		tag := fmt.Sprintf("w%d", nw)
		facc := make([][]VecVirtual, nw)
		for x := range facc {
			facc[x] = make([]VecVirtual, r)
			for i := range facc[x] {
				facc[x][i] = ZMM()
			}
		}
		wv := make([]VecVirtual, nw)
		for x := range wv {
			wv[x] = ZMM()
		}
		// group adds one group (the unsigned weight bytes in wv) at activation offset ja.
		group := func(ja Register) {
			for i := range rows {
				qv, cv, sv := ZMM(), ZMM(), ZMM()
				VMOVDQU64(Mem{Base: rows[i], Index: ja, Scale: 1}, qv)
				VMOVDQU64(Mem{Base: rows[i], Index: ja, Scale: 1, Disp: 64}, cv)
				VMOVUPS(Mem{Base: rows[i], Index: ja, Scale: 1, Disp: 128}, sv)
				for x := range wv {
					acc := ZMM()
					VMOVDQA64(cv, acc)
					vpdpbusd(qv, wv[x], acc, false)
					VCVTDQ2PS(acc, acc)
					VFMADD231PS(sv, acc, facc[x][i])
				}
			}
		}
		Label(l(tag))
		CMPQ(nx, Imm(uint64(nw)))
		JB(LabelRef(l(next)))
		for x := range facc {
			for i := range facc[x] {
				VPXORD(facc[x][i], facc[x][i], facc[x][i])
			}
		}
		pw, ja := GP64(), GP64()
		MOVQ(row, pw)
		XORQ(ja, ja)
		ng := Load(Param("groups"), GP64())
		// wmem is weight row x of the pass at byte offset disp of the current group.
		wmem := func(x, disp int) Mem {
			switch x {
			case 0:
				return Mem{Base: pw, Disp: disp}
			case 1:
				return Mem{Base: pw, Index: ldw, Scale: 1, Disp: disp}
			case 2:
				return Mem{Base: pw, Index: ldw, Scale: 2, Disp: disp}
			}
			return Mem{Base: pw, Index: ldw, Scale: 4, Disp: disp} // x = 3 is read from pw3 below
		}
		var pw3 Register
		if nw > 3 {
			pw3 = GP64()
		}
		load := func(x int, m Mem) {
			if x == 3 {
				m = Mem{Base: pw3, Disp: m.Disp}
			}
			VPXORD(m, c80, wv[x])
		}
		Label(l(tag + "group"))
		TESTQ(ng, ng)
		JZ(LabelRef(l(tag + "partial")))
		if nw > 3 {
			LEAQ(Mem{Base: pw, Index: ldw, Scale: 2}, pw3)
			ADDQ(ldw, pw3)
		}
		for x := range wv {
			m := wmem(x, 0)
			if x == 3 {
				m = Mem{Base: pw3}
			}
			PREFETCHT0(m.Offset(gemvPrefetch))
			load(x, wmem(x, 0))
		}
		group(ja)
		ADDQ(Imm(64), pw)
		ADDQ(U32(q8RecT), ja)
		DECQ(ng)
		JMP(LabelRef(l(tag + "group")))
		Label(l(tag + "partial"))
		mask := Load(Param("mask"), GP64())
		TESTQ(mask, mask)
		JZ(LabelRef(l(tag + "reduce")))
		if nw > 3 {
			LEAQ(Mem{Base: pw, Index: ldw, Scale: 2}, pw3)
			ADDQ(ldw, pw3)
		}
		k := K()
		KMOVQ(mask, k)
		for x := range wv {
			m := wmem(x, 0)
			if x == 3 {
				m = Mem{Base: pw3}
			}
			VMOVDQU8_Z(m, k, wv[x])
			VPXORD(c80, wv[x], wv[x])
		}
		group(ja)
		Label(l(tag + "reduce"))
		for x := range facc {
			for i, f := range facc[x] {
				y := YMM()
				VEXTRACTF64X4(Imm(1), f, y)
				VADDPS(y, f.AsY(), y) // lanes l + l+8
				h := XMM()
				VEXTRACTF32X4(Imm(1), y, h)
				VADDPS(h, y.AsX(), h) // + l+4
				t := XMM()
				VPERMILPS(Imm(0x4e), h, t)
				VADDPS(t, h, h) // + l+2
				VPERMILPS(Imm(0xb1), h, t)
				VADDSS(t, h, h) // + l+1
				VMOVSS(h, Mem{Base: py, Disp: 32*x + 4*i})
			}
		}
		ADDQ(U32(32*nw), py)
		for range nw {
			ADDQ(ldw, row)
		}
		SUBQ(Imm(uint64(nw)), nx)
		JMP(LabelRef(l(tag)))
	}
	pass(dotQ8W, "w1")
	pass(1, "done")
	Label(l("done"))
	VZEROUPPER()
	RET()
}
