package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// q8GemmRows is the most rows of activations one gemmQ8 call takes over a weight panel.
const q8GemmRows = 8

// q8GemmKernels emits gemmQ8x1VNNI … gemmQ8x8VNNI. It uses vnniKernels' constants, so it must
// be called after vnniKernels.
func q8GemmKernels() {
	for r := 1; r <= q8GemmRows; r++ {
		gemmQ8(r)
	}
}

// gemmQ8 is the int8 product of many rows (a prefill) over one packed 16-column int8 weight
// panel, with the output's scale and bias applied and the rows stored into C:
//
//	c[i·ldc + x] = (Σ_b scale_ib · Σ_{p in block b} q_i[p]·w[16p+x]) · scale[x] (+ bias[x])
//
// for the columns x set in cmask. The sums are gemvPanelQ8's (the decode kernel) with the same
// float operations in the same order — per block one exact int32 sum started from −128·Σq,
// converted to float32, and one FMA with the block's scale onto the row's accumulator, then one
// multiply by the column's scale and one add of its bias, as the decode path does them in Go —
// so a row of a prefill has the bits of the row decoded alone. It differs from gemvPanelQ8 in
// what a many-row product needs: a block's four depth steps go into one accumulator per row
// (integer sums: exact in any order; with several rows the chains are independent enough), and
// the scale, bias and masked stores are done here instead of by a Go loop over the outputs.
func gemmQ8(r int) {
	name := fmt.Sprintf("gemmQ8x%dVNNI", r)
	TEXT(name, NOSPLIT, "func(c []float32, ldc int, qa []byte, lda int, w []int8, blocks, steps int, mask uint64, scale, bias []float32, cmask uint64)")
	Pragma("noescape")
	Doc(fmt.Sprintf("%s stores to c (row stride ldc) the quantized-activation product of %d rows of activation records (qa, row stride lda bytes) and one int8 weight panel w (blocks whole blocks of %d k, then a partial block of steps 4-k steps and a masked last step), times scale plus bias (none when empty), in the columns set in cmask.", name, r, q8Block))
	facc := q8PanelSums(name, r, 1)
	l := func(s string) string { return name + "_" + s }

	// The epilogue: scale (and bias), then masked stores of the columns in cmask.
	cm := Load(Param("cmask"), GP64())
	km := K()
	KMOVQ(cm, km)
	sv := ZMM()
	VMOVUPS_Z(Mem{Base: Load(Param("scale").Base(), GP64())}, km, sv)
	pc := Load(Param("c").Base(), GP64())
	ldc := Load(Param("ldc"), GP64())
	SHLQ(Imm(2), ldc)
	nbias := Load(Param("bias").Len(), GP64())
	TESTQ(nbias, nbias)
	JZ(LabelRef(l("nobias")))
	bv := ZMM()
	VMOVUPS_Z(Mem{Base: Load(Param("bias").Base(), GP64())}, km, bv)
	store := func(biased bool) {
		for i := range facc {
			if i > 0 {
				ADDQ(ldc, pc)
			}
			VMULPS(sv, facc[i], facc[i])
			if biased {
				VADDPS(bv, facc[i], facc[i])
			}
			VMOVUPS(facc[i], km, Mem{Base: pc})
		}
	}
	store(true)
	JMP(LabelRef(l("done")))
	Label(l("nobias"))
	store(false)
	Label(l("done"))
	VZEROUPPER()
	RET()
}

// q8PanelSums emits the body shared by gemvPanelQ8 and gemmQ8, the sums of r rows of activation
// records (params qa, lda) over one int8 weight panel (params w, blocks, steps, mask), and
// returns the r float accumulators, which hold the rows' sums at the label name+"_store".
//
// A depth step loads 64 weight bytes — 4 rows of k × 16 columns — and VPERMB (AVX512_VBMI)
// gathers them into 16 dwords of 4 consecutive k per column; VPXORD with 0x80 makes them
// unsigned (w+128), and one VPDPBUSD per row of activations adds the 4 products of its
// broadcast dword (4 signed quantized activations) to each column's int32 sum. A block's sum
// starts from −128·Σq, so it ends exactly Σ q·w; with nacc = 2 even and odd steps go into two
// accumulators, added at the end of the block (for the latency of few rows), with nacc = 1 into
// one: integer sums, exact in any order. Then, per row, the sum converts to float32 and one FMA
// with the block's scale adds it to the row's float accumulator: the same float operations in the
// same order whatever r and nacc are, so every row has the bits of the row alone. The weight
// vector is loaded and permuted once for all r rows.
//
// blocks whole blocks are followed, when steps or mask is non-zero, by one partial block of
// steps whole depth steps and a last step of 1–3 rows of k loaded under the byte mask mask
// (masked-off bytes are neither read nor faulted on). The weight stream is prefetched one line
// per step, as q8Prefetch says.
func q8PanelSums(name string, r, nacc int) []VecVirtual {
	rows := activationRows(r)
	pw := Load(Param("w").Base(), GP64())
	nb := Load(Param("blocks"), GP64())
	j := GP64() // byte offset of the current block record in every row
	XORQ(j, j)
	idx, c80, wp := ZMM(), ZMM(), ZMM()
	VMOVDQU64(q8Perm, idx)
	VMOVDQU64(q8x80, c80)
	facc := make([]VecVirtual, r)
	acc := make([][]VecVirtual, r)
	for i := range facc {
		facc[i] = ZMM()
		VPXORD(facc[i], facc[i], facc[i])
		acc[i] = make([]VecVirtual, nacc)
		for h := range acc[i] {
			acc[i][h] = ZMM()
		}
	}
	l := func(s string) string { return name + "_" + s }
	// start sets each row's block sums to −128·Σq of the block at record offset rec.
	start := func(rec Register) {
		for i := range acc {
			VPBROADCASTD(Mem{Base: rows[i], Index: rec, Scale: 1, Disp: q8Block + 4}, acc[i][0])
			for _, a := range acc[i][1:] {
				VPXORD(a, a, a)
			}
		}
	}
	// finish adds each row's block sum times the block's scale to its float accumulator.
	finish := func(rec Register) {
		for i := range acc {
			for _, a := range acc[i][1:] {
				VPADDD(a, acc[i][0], acc[i][0])
			}
			VCVTDQ2PS(acc[i][0], acc[i][0])
			VFMADD231PS_BCST(Mem{Base: rows[i], Index: rec, Scale: 1, Disp: q8Block}, acc[i][0], facc[i])
		}
	}
	// step adds one depth step (the 64 permuted weight bytes in wp) for the activations at
	// record offset off+disp into accumulator h (mod nacc).
	step := func(off Register, disp, h int) {
		VPXORD(c80, wp, wp)
		for i := range acc {
			vpdpbusd(Mem{Base: rows[i], Index: off, Scale: 1, Disp: disp}, wp, acc[i][h%nacc], true)
		}
	}

	Label(l("block"))
	TESTQ(nb, nb)
	JZ(LabelRef(l("partial")))
	start(j)
	for s := 0; s < q8Block/4; s++ {
		q8Prefetch.emit(Mem{Base: pw, Disp: 64 * s})
		VPERMB(Mem{Base: pw, Disp: 64 * s}, idx, wp)
		step(j, 4*s, s%2)
	}
	finish(j)
	ADDQ(Imm(q8Rec), j)
	ADDQ(U32(16*q8Block), pw)
	DECQ(nb)
	JMP(LabelRef(l("block")))

	Label(l("partial"))
	ns := Load(Param("steps"), GP64())
	mask := Load(Param("mask"), GP64())
	t := GP64()
	MOVQ(ns, t)
	ORQ(mask, t)
	JZ(LabelRef(l("store")))
	start(j)
	MOVQ(j, t) // activation offset of the step
	Label(l("step"))
	TESTQ(ns, ns)
	JZ(LabelRef(l("masked")))
	VPERMB(Mem{Base: pw}, idx, wp)
	step(t, 0, 0)
	ADDQ(Imm(4), t)
	ADDQ(Imm(64), pw)
	DECQ(ns)
	JMP(LabelRef(l("step")))
	Label(l("masked"))
	TESTQ(mask, mask)
	JZ(LabelRef(l("finish")))
	k := K()
	KMOVQ(mask, k)
	wv := ZMM()
	VMOVDQU8_Z(Mem{Base: pw}, k, wv)
	VPERMB(wv, idx, wp)
	step(t, 0, 1)
	Label(l("finish"))
	finish(j)
	Label(l("store"))
	return facc
}

// q8Prefetch is how q8PanelSums prefetches the weight stream: dist bytes ahead, into L1 (PREFETCHT0)
// or, with l2, into L2 only (PREFETCHT1).
var q8Prefetch = prefetchSpec{dist: gemvPrefetch}

type prefetchSpec struct {
	dist int
	l2   bool
}

func (p prefetchSpec) emit(m Mem) {
	if p.l2 {
		PREFETCHT1(m.Offset(p.dist))
		return
	}
	PREFETCHT0(m.Offset(p.dist))
}
