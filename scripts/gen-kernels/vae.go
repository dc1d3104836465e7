package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// Winograd F(4×4,3×3) transforms (Lavin & Gray's points 0, ±1, ±2), sixteen neighbouring tiles
// of one channel per call, each tile's values in one lane of a ZMM vector:
//
//	Bᵀ = [[4,0,−5,0,1,0],[0,−4,−4,1,1,0],[0,4,−4,−1,1,0],[0,−2,−1,2,1,0],[0,2,−1,−2,1,0],[0,4,0,−5,0,1]]
//	Aᵀ = [[1,1,1,1,1,0],[0,1,−1,2,−2,0],[0,1,1,4,4,0],[0,1,−1,8,−8,1]]

// w43Consts are broadcasts of the transforms' constants.
type w43Consts struct{ two, four, five, eight VecVirtual }

// w43Data holds the constants' read-only data, declared once for both kernels.
var w43Data = map[float32]Mem{}

func w43Const(v float32) VecVirtual {
	m, ok := w43Data[v]
	if !ok {
		m = constant(fmt.Sprintf("w43_%g", v), v)
		w43Data[v] = m
	}
	r := ZMM()
	VBROADCASTSS(m, r)
	return r
}

// w43Load broadcasts 2, 4 and 5 (input transform) or 2, 4 and 8 (output transform).
func w43Load(eight bool) w43Consts {
	c := w43Consts{two: w43Const(2), four: w43Const(4)}
	if eight {
		c.eight = w43Const(8)
	} else {
		c.five = w43Const(5)
	}
	return c
}

// w43Bt returns Bᵀ·d for six vectors d (d is not changed).
func w43Bt(c w43Consts, d [6]VecVirtual) [6]VecVirtual {
	var o [6]VecVirtual
	for i := range o {
		o[i] = ZMM()
	}
	// o0 = 4d0 − 5d2 + d4
	VMOVAPS(d[4], o[0])
	VFMADD231PS(c.four, d[0], o[0])
	VFNMADD231PS(c.five, d[2], o[0])
	// a = d4 − 4d2, b = d3 − 4d1: o1 = a + b, o2 = a − b
	a, b := ZMM(), ZMM()
	VMOVAPS(d[4], a)
	VFNMADD231PS(c.four, d[2], a)
	VMOVAPS(d[3], b)
	VFNMADD231PS(c.four, d[1], b)
	VADDPS(b, a, o[1])
	VSUBPS(b, a, o[2])
	// p = d4 − d2, q = 2(d3 − d1): o3 = p + q, o4 = p − q
	VSUBPS(d[2], d[4], a)
	VSUBPS(d[1], d[3], b)
	VMOVAPS(a, o[3])
	VFMADD231PS(c.two, b, o[3])
	VMOVAPS(a, o[4])
	VFNMADD231PS(c.two, b, o[4])
	// o5 = 4d1 − 5d3 + d5
	VMOVAPS(d[5], o[5])
	VFMADD231PS(c.four, d[1], o[5])
	VFNMADD231PS(c.five, d[3], o[5])
	return o
}

// w43At returns Aᵀ·m for six vectors m, plus bias when it is not nil.
func w43At(c w43Consts, m [6]VecVirtual, bias VecVirtual) [4]VecVirtual {
	var o [4]VecVirtual
	for i := range o {
		o[i] = ZMM()
	}
	s12, d12, s34, d34 := ZMM(), ZMM(), ZMM(), ZMM()
	VADDPS(m[2], m[1], s12)
	VSUBPS(m[2], m[1], d12)
	VADDPS(m[4], m[3], s34)
	VSUBPS(m[4], m[3], d34)
	// o0 = m0 + s12 + s34, o1 = d12 + 2·d34, o2 = s12 + 4·s34, o3 = d12 + 8·d34 + m5
	VADDPS(s12, m[0], o[0])
	VADDPS(s34, o[0], o[0])
	VMOVAPS(d12, o[1])
	VFMADD231PS(c.two, d34, o[1])
	VMOVAPS(s12, o[2])
	VFMADD231PS(c.four, s34, o[2])
	VADDPS(m[5], d12, o[3])
	VFMADD231PS(c.eight, d34, o[3])
	if bias != nil {
		for i := range o {
			VADDPS(bias, o[i], o[i])
		}
	}
	return o
}

// loadStride loads the int parameter name, a count of float32 values, as a byte count.
func loadStride(name string) Register {
	r := Load(Param(name), GP64())
	SHLQ(Imm(2), r)
	return r
}

// permute returns the lanes idx selects from the 32 of (lo, hi).
func permute(lo, hi, idx VecVirtual) VecVirtual {
	r := ZMM()
	VMOVAPS(lo, r)
	VPERMT2PS(hi, idx, r)
	return r
}

// winograd43In16 is the F(4×4,3×3) input transform of sixteen neighbouring tiles of one
// channel: with d the 6×66 patch r[i·ld+x] (i < 6; r must be readable to x = 67), it writes
// V[ξ] = (Bᵀ d B)[ξ] of tile t (columns 4t..4t+5) to v[ξ·stride+t], ξ = 6k+l < 36, t < 16.
// Per input row, the columns 0–63 and 4–67 are split into the four column phases x mod 4 (two
// levels of VPERMT2PS; phases 4 and 5 are phases 0 and 1 of the second set) and B is applied
// across them; the 36 results go to tmp[(6i+l)·16:], from where Bᵀ is applied down the rows.
func winograd43In16() {
	TEXT("winograd43In16AVX512", NOSPLIT, "func(v []float32, stride int, r []float32, ld int, tmp []float32)")
	Pragma("noescape")
	Doc("winograd43In16AVX512 writes the Winograd F(4×4,3×3) input transform of 16 tiles (6×68 patch r[i·ld+x]) to v[ξ·stride+t], ξ < 36, t < 16; tmp holds 576 values.")
	pv, stride := Load(Param("v").Base(), GP64()), loadStride("stride")
	pr, ld := Load(Param("r").Base(), GP64()), loadStride("ld")
	pt := Load(Param("tmp").Base(), GP64())
	w43InBody("w43", pv, stride, pt, func(x *[8]VecVirtual) {
		for h, off := range []int{0, 16, 32, 48, 4, 20, 36, 52} {
			x[h] = ZMM()
			VMOVUPS(Mem{Base: pr, Disp: 4 * off}, x[h])
		}
	}, func() { ADDQ(ld, pr) })
}

// winograd43Out16 is the F(4×4,3×3) output transform of sixteen neighbouring tiles of one
// output channel: from M[ξ] at m[ξ·stride+t] (ξ = 6k+l < 36, t < 16) it writes
// Y = Aᵀ M A + bias[0], output row r of tile t at y[r·ldy+4t : r·ldy+4t+4]. Aᵀ runs down the
// columns first (results in tmp), then across each row, whose four output columns are
// interleaved with two levels of VPERMT2PS.
func winograd43Out16() {
	TEXT("winograd43Out16AVX512", NOSPLIT, "func(y []float32, ldy int, m []float32, stride int, bias []float32, tmp []float32)")
	Pragma("noescape")
	Doc("winograd43Out16AVX512 writes the Winograd F(4×4,3×3) output transform of 16 tiles (M[ξ] at m[ξ·stride+t]) plus bias[0] to y[r·ldy:r·ldy+64], r < 4; tmp holds 384 values.")
	py, ldy := Load(Param("y").Base(), GP64()), loadStride("ldy")
	w43OutBody("w43", func(h int, v VecVirtual) { VMOVUPS(v, Mem{Base: py, Disp: 64 * h}) }, func() { ADDQ(ldy, py) })
}
