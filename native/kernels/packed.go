package kernels

// Blocking of the packed product (GotoBLAS order): A is packed once per call into strips of
// gemmMR rows interleaved by depth; each task packs a gemmKC×gemmNR panel of B (16 KiB, stays in
// L1) and sweeps it over gemmMC rows of A (gemmMC×gemmKC floats, 96 KiB, in L2), the C tile
// living in twelve YMM registers for a whole depth block.
const (
	gemmMR = 6
	gemmNR = 16
	gemmKC = 256
	gemmMC = 96
)

// gemmPacked computes C = A·W (+ bias) with the AVX2 micro-kernel; W may be float32 or quantized
// (converted, and scaled, while its panel is packed). Tasks are (row block, column panel) pairs;
// each C element is computed by one task in a fixed order, so the result does not depend on the
// number of workers.
func gemmPacked(p *workPool, m, n, k int, a []float32, lda int, w weights, ldb int, c []float32, ldc int, bias []float32) {
	strips := (m + gemmMR - 1) / gemmMR
	p.apack = grow(p.apack, strips*gemmMR*k)
	ap := p.apack
	for s := 0; s < strips; s++ {
		blk := ap[s*gemmMR*k:][:gemmMR*k]
		i0 := s * gemmMR
		for r := 0; r < gemmMR; r++ {
			if i0+r >= m {
				for q := 0; q < k; q++ {
					blk[q*gemmMR+r] = 0
				}
				continue
			}
			row := a[(i0+r)*lda:][:k]
			for q, v := range row {
				blk[q*gemmMR+r] = v
			}
		}
	}
	panels := (n + gemmNR - 1) / gemmNR
	mblocks := (m + gemmMC - 1) / gemmMC
	p.pk = gemmPackedJob{p: p, m: m, n: n, k: k, ap: ap, w: w, ldb: ldb, c: c, ldc: ldc, bias: bias, panels: panels}
	p.run(&p.pk, mblocks*panels, 1)
	p.pk = gemmPackedJob{}
}

type gemmPackedJob struct {
	p       *workPool
	m, n, k int
	ap      []float32 // packed A: strips of (K,gemmMR)
	w       weights
	ldb     int
	c, bias []float32
	ldc     int
	panels  int
}

// chunk computes tasks [lo,hi): task t is row block t/panels and column panel t%panels.
func (j *gemmPackedJob) chunk(wk, lo, hi int) {
	buf := j.p.buf(wk, gemmKC*gemmNR+gemmMR*gemmNR)
	bp, tmp := buf[:gemmKC*gemmNR], buf[gemmKC*gemmNR:]
	for t := lo; t < hi; t++ {
		mb, jp := t/j.panels, t%j.panels
		i0, i1 := mb*gemmMC, min((mb+1)*gemmMC, j.m)
		j0 := jp * gemmNR
		nb := min(gemmNR, j.n-j0)
		for i := i0; i < i1; i++ {
			ci := j.c[i*j.ldc+j0:][:nb]
			setBias(ci, j.bias, j0)
		}
		for p0 := 0; p0 < j.k; p0 += gemmKC {
			kb := min(gemmKC, j.k-p0)
			b := bp[:kb*gemmNR]
			j.packB(b, p0, kb, j0, nb)
			for i := i0; i < i1; i += gemmMR {
				a := j.ap[i*j.k+p0*gemmMR:][:kb*gemmMR]
				mr := min(gemmMR, i1-i)
				if mr == gemmMR && nb == gemmNR {
					gemm6x16AVX2(a, b, j.c[i*j.ldc+j0:], j.ldc)
					continue
				}
				// Edge tile: run the kernel on a zero-padded copy of the valid part of C.
				clear(tmp)
				for r := 0; r < mr; r++ {
					copy(tmp[r*gemmNR:][:nb], j.c[(i+r)*j.ldc+j0:][:nb])
				}
				gemm6x16AVX2(a, b, tmp, gemmNR)
				for r := 0; r < mr; r++ {
					copy(j.c[(i+r)*j.ldc+j0:][:nb], tmp[r*gemmNR:][:nb])
				}
			}
		}
	}
}

// packB writes W[p0:p0+kb, j0:j0+nb] as float32 rows of gemmNR (zero-padded) into b, applying
// the int8 per-column scales.
func (j *gemmPackedJob) packB(b []float32, p0, kb, j0, nb int) {
	w := &j.w
	for q := 0; q < kb; q++ {
		dst := b[q*gemmNR:][:gemmNR]
		off := (p0+q)*j.ldb + j0
		switch {
		case w.f32 != nil:
			copy(dst, w.f32[off:off+nb])
		case w.i8 != nil:
			src := w.i8[off : off+nb]
			for x, v := range src {
				dst[x] = float32(v) * w.scale[j0+x]
			}
		default:
			for x := range nb {
				dst[x] = w.at(off + x)
			}
		}
		clear(dst[nb:])
	}
}
