package kernels

import "github.com/modelrt/modelrt/sdk/safetensors"

// Blocking of the packed product (GotoBLAS order): A is packed once per call into strips of
// gemmMR rows interleaved by depth; each task packs gemmNP panels of gemmKC×gemmNR of B (16 KiB
// each, one at a time in L1) and sweeps each over gemmMC rows of A (gemmMC×gemmKC floats,
// 240 KiB, in L2), the C tile living in twelve YMM registers for a whole depth block. Packing
// four panels at once reads each row of B 256 bytes at a time: one panel alone read 64 bytes per
// row at a stride of the whole row, which for an im2col matrix cost a cache and TLB miss each
// (a fifth of a VAE decode's time).
const (
	gemmMR = 6
	gemmNR = 16
	gemmKC = 256
	gemmMC = 240
	gemmNP = 4 // panels per task: rows of B are read 256 bytes at a time while packing
)

// gemmPacked computes C = A·W (+ bias) with the AVX2 micro-kernel; W may be float32 or quantized
// (converted, and scaled, while its panel is packed). Tasks are (row block, column panel) pairs;
// each C element is computed by one task in a fixed order, so the result does not depend on the
// number of workers.
func gemmPacked(p *workPool, m, n, k int, a []float32, lda int, w weights, ldb int, c []float32, ldc int, bias []float32) {
	strips := (m + gemmMR - 1) / gemmMR
	p.apack = grow(p.apack, strips*gemmMR*k)
	// Packed on both workers when large (a 64-row prefill's A is 49–197 K values, 30–120 µs on
	// one core): otherwise the helper waits for it.
	p.pa = packAJob{ap: p.apack, a: a, m: m, k: k, lda: lda}
	p.run(&p.pa, strips, max(1, packAGrainWork/(gemmMR*k)))
	p.pa = packAJob{}
	gemmPackedRun(p, m, n, k, p.apack, w, ldb, c, ldc, bias, packedBatch{n: 1})
}

// packA writes the (M,K) matrix a (row stride lda) into ap as strips of gemmMR rows interleaved
// by depth (strip s at ap[s·gemmMR·K:], element (i,q) at q·gemmMR + i%gemmMR), zero rows past M.
//
// With useAVX512 whole groups of eight depth steps go through packA6AVX512 (an 8×8 transpose
// per group), the rest in Go.
func packA(ap []float32, m, k int, a []float32, lda int) {
	packAStrips(ap, m, k, a, lda, 0, (m+gemmMR-1)/gemmMR)
}

// packAStrips is packA for strips [s0,s1) only.
func packAStrips(ap []float32, m, k int, a []float32, lda int, s0, s1 int) {
	k8 := 0
	if useSIMD && useAVX512 {
		k8 = k &^ 7
	}
	for s := s0; s < s1; s++ {
		blk := ap[s*gemmMR*k:][:gemmMR*k]
		i0 := s * gemmMR
		rows := min(gemmMR, m-i0)
		if k8 > 0 {
			if rows < gemmMR {
				clear(blk[:gemmMR*k8])
			}
			packA6AVX512(blk[:gemmMR*k8], a[i0*lda:][:(rows-1)*lda+k8], lda, rows)
		}
		for r := 0; r < gemmMR; r++ {
			if r >= rows {
				for q := k8; q < k; q++ {
					blk[q*gemmMR+r] = 0
				}
				continue
			}
			row := a[(i0+r)*lda:][:k]
			for q := k8; q < k; q++ {
				blk[q*gemmMR+r] = row[q]
			}
		}
	}
}

// packAJob packs the strips of A on the worker pool, one item per strip.
type packAJob struct {
	ap, a     []float32
	m, k, lda int
}

func (j *packAJob) chunk(_, lo, hi int) { packAStrips(j.ap, j.m, j.k, j.a, j.lda, lo, hi) }

// packedBatch describes n independent products of one shape run as a single job (Winograd's 16
// or 36 per band): product x reads A at ap[x·a:], float32 panels at w.f32[x·b:] and writes C at
// c[x·c:]. n = 1 is a plain product.
// packAGrainWork is about how many values of A a packing task takes.
const packAGrainWork = 1 << 14

type packedBatch struct{ n, a, b, c int }

// gemmPackedRun runs the products of batch on the worker pool with A already packed (packA's
// layout). With batch.n > 1, w must be float32 panels (read in place).
func gemmPackedRun(p *workPool, m, n, k int, ap []float32, w weights, ldb int, c []float32, ldc int, bias []float32, batch packedBatch) {
	groups := (n + gemmNP*gemmNR - 1) / (gemmNP * gemmNR)
	mblocks := (m + gemmMC - 1) / gemmMC
	p.pk = gemmPackedJob{p: p, m: m, n: n, k: k, ap: ap, w: w, ldb: ldb, c: c, ldc: ldc, bias: bias, groups: groups,
		mblocks: mblocks, batch: batch}
	p.run(&p.pk, batch.n*mblocks*groups, 1)
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
	groups  int // column groups of gemmNP panels
	mblocks int // row blocks of gemmMC rows
	batch   packedBatch
}

// chunk computes tasks [lo,hi): task t is row block t/groups and column group t%groups.
func (j *gemmPackedJob) chunk(wk, lo, hi int) {
	const panel = gemmKC * gemmNR
	buf := j.p.buf(wk, gemmNP*panel+gemmMR*gemmNR)
	tmp := buf[gemmNP*panel:]
	// init holds each panel's 16 starting values (bias or zeros): the first depth block starts
	// its accumulators from them instead of from C (gemm6x16InitAVX2).
	var init [gemmNP * gemmNR]float32
	for task := lo; task < hi; task++ {
		x, t := task/(j.mblocks*j.groups), task%(j.mblocks*j.groups)
		ap, cm, w := j.ap[x*j.batch.a:], j.c[x*j.batch.c:], j.w
		if x > 0 {
			w.f32 = w.f32[x*j.batch.b:]
		}
		mb, g := t/j.groups, t%j.groups
		i0, i1 := mb*gemmMC, min((mb+1)*gemmMC, j.m)
		j0 := g * gemmNP * gemmNR
		ng := min(gemmNP*gemmNR, j.n-j0)
		init = [gemmNP * gemmNR]float32{}
		if j.bias != nil {
			copy(init[:ng], j.bias[j0:j0+ng])
		}
		for p0 := 0; p0 < j.k; p0 += gemmKC {
			kb := min(gemmKC, j.k-p0)
			// float32 weights already in panels are read in place: packing would only copy them.
			inPlace := w.panels && w.f32 != nil
			if !inPlace {
				j.packB(buf[:gemmNP*panel], p0, kb, j0, ng)
			}
			i := i0 // row strips below i are done for this depth block
			if useAVX512 && ng == gemmNP*gemmNR && gemmTilesZ {
				// Whole 64-column groups on the AVX-512 kernels, every row strip (the last one
				// may have fewer than six rows) straight into C.
				b, bs := buf[:gemmNP*panel], panel
				var pf []float32 // where the next B block to prefetch starts (panel 0)
				lines := 0       // its lines (depth steps) per panel
				if inPlace {
					bs = j.k * gemmNR
					b = w.f32[((j0/gemmNR)*j.k+p0)*gemmNR:][:(gemmNP-1)*bs+kb*gemmNR]
					pf, lines = j.nextBlock(x, g, p0+kb, w.f32)
				}
				strips := (i1 - i0 + gemmMR - 1) / gemmMR
				for s := 0; i < i1; i, s = i+gemmMR, s+1 {
					a := ap[i*j.k+p0*gemmMR:][:kb*gemmMR]
					var in []float32
					if p0 == 0 {
						in = init[:]
					}
					l0, l1 := s*lines/strips, (s+1)*lines/strips
					var pfs []float32
					if l1 > l0 {
						pfs = pf[l0*gemmNR:]
					}
					ct := cm[i*j.ldc+j0:]
					switch min(gemmMR, i1-i) {
					case 6:
						gemm6x64PfAVX512(a, b, bs, ct, j.ldc, in, pfs, l1-l0)
					case 5:
						gemm5x64PfAVX512(a, b, bs, ct, j.ldc, in, pfs, l1-l0)
					case 4:
						gemm4x64PfAVX512(a, b, bs, ct, j.ldc, in, pfs, l1-l0)
					case 3:
						gemm3x64PfAVX512(a, b, bs, ct, j.ldc, in, pfs, l1-l0)
					case 2:
						gemm2x64PfAVX512(a, b, bs, ct, j.ldc, in, pfs, l1-l0)
					default:
						gemm1x64PfAVX512(a, b, bs, ct, j.ldc, in, pfs, l1-l0)
					}
				}
			}
			if useAVX512 && ng == gemmNP*gemmNR && !gemmTilesZ {
				// Whole 6×64 tiles on the AVX-512 kernel: four panels at once.
				b, bs := buf[:gemmNP*panel], panel
				if inPlace {
					bs = j.k * gemmNR
					b = w.f32[((j0/gemmNR)*j.k+p0)*gemmNR:][:(gemmNP-1)*bs+kb*gemmNR]
				}
				for ; i+gemmMR <= i1; i += gemmMR {
					a := ap[i*j.k+p0*gemmMR:][:kb*gemmMR]
					if p0 == 0 {
						gemm6x64InitAVX512(a, b, bs, cm[i*j.ldc+j0:], j.ldc, init[:])
					} else {
						gemm6x64AVX512(a, b, bs, cm[i*j.ldc+j0:], j.ldc)
					}
				}
			}
			for q := 0; q*gemmNR < ng; q++ {
				b := buf[q*panel:][:kb*gemmNR]
				if inPlace {
					b = w.f32[((j0/gemmNR+q)*j.k+p0)*gemmNR:][:kb*gemmNR]
				}
				jq, nb := j0+q*gemmNR, min(gemmNR, ng-q*gemmNR)
				for i := i; i < i1; i += gemmMR {
					a := ap[i*j.k+p0*gemmMR:][:kb*gemmMR]
					mr := min(gemmMR, i1-i)
					if mr == gemmMR && nb == gemmNR {
						if p0 == 0 {
							gemm6x16InitAVX2(a, b, cm[i*j.ldc+jq:], j.ldc, init[q*gemmNR:][:gemmNR])
						} else {
							gemm6x16AVX2(a, b, cm[i*j.ldc+jq:], j.ldc)
						}
						continue
					}
					// Edge tile: run the kernel on a zero-padded copy of the valid part of C
					// (of the starting values in the first depth block).
					clear(tmp)
					for r := 0; r < mr; r++ {
						if p0 == 0 {
							copy(tmp[r*gemmNR:][:nb], init[q*gemmNR:][:nb])
						} else {
							copy(tmp[r*gemmNR:][:nb], cm[(i+r)*j.ldc+jq:][:nb])
						}
					}
					gemm6x16AVX2(a, b, tmp, gemmNR)
					for r := 0; r < mr; r++ {
						copy(cm[(i+r)*j.ldc+jq:][:nb], tmp[r*gemmNR:][:nb])
					}
				}
			}
		}
	}
}

// gemmTilesZ runs every row strip of a whole 64-column group on the gemm<r>x64PfAVX512 kernels,
// which also prefetch the next B block (see nextBlock); off, whole six-row strips run on
// gemm6x64AVX512 and the last strip on the YMM kernel over a padded copy, without prefetching
// (the state before; kept to compare the two in one run, BenchmarkGemmPrefill).
var gemmTilesZ = true

// nextBlock returns where the B block that this worker will probably read after depth block
// [.., p1) of column group g starts in the float32 panels f (panel 0 of its group), and its
// depth steps, one cache line per panel each: the next depth block of the same panels, or after
// the last one the first block of column group g+workers — tasks are handed out in order, so
// with every worker equally fast that is this worker's next one. A wrong guess costs only
// memory bandwidth: the other worker reads those lines soon. It returns 0 lines when there is
// nothing to prefetch.
func (j *gemmPackedJob) nextBlock(x, g, p1 int, f []float32) ([]float32, int) {
	j0 := g * gemmNP * gemmNR
	if p1 >= j.k {
		g += j.p.workers
		j0, p1 = g*gemmNP*gemmNR, 0
		if j0+gemmNP*gemmNR > j.n || x > 0 || j.mblocks > 1 {
			return nil, 0
		}
	}
	off := ((j0/gemmNR)*j.k + p1) * gemmNR
	return f[off:], min(gemmKC, j.k-p1)
}

// packB writes W[p0:p0+kb, j0:j0+ng] as float32 panels of gemmNR columns (panel q at
// buf[q·gemmKC·gemmNR:], row p at offset p·gemmNR, zero-padded past ng) into buf, applying the
// int8 per-column scales.
func (j *gemmPackedJob) packB(buf []float32, p0, kb, j0, ng int) {
	const panel = gemmKC * gemmNR
	w := &j.w
	if w.panels {
		j.packBPanels(buf, p0, kb, j0, ng)
		return
	}
	for q := 0; q < kb; q++ {
		off := (p0+q)*j.ldb + j0
		switch {
		case w.f32 != nil && ng == gemmNP*gemmNR:
			// Whole panels: fixed-size array copies compile to vector moves, not memmove calls.
			src := w.f32[off : off+gemmNP*gemmNR]
			for x := 0; x < gemmNP; x++ {
				*(*[gemmNR]float32)(buf[x*panel+q*gemmNR:]) = *(*[gemmNR]float32)(src[x*gemmNR:])
			}
			continue
		case w.f32 != nil:
			for x, v := range w.f32[off : off+ng] {
				buf[x/gemmNR*panel+q*gemmNR+x%gemmNR] = v
			}
		case w.i8 != nil:
			src, sc := w.i8[off:off+ng], w.scale[j0:j0+ng]
			for x0 := 0; x0 < ng; x0 += gemmNR {
				n := min(gemmNR, ng-x0)
				d, s, f := buf[x0/gemmNR*panel+q*gemmNR:][:n], src[x0:][:n], sc[x0:][:n]
				if n == gemmNR { // only the SIMD path packs (gemmPacked runs when useSIMD)
					widenI8AVX2(d, s, f)
					continue
				}
				for x := range d {
					d[x] = float32(s[x]) * f[x]
				}
			}
		default:
			for x0 := 0; x0 < ng; x0 += gemmNR {
				n := min(gemmNR, ng-x0)
				d, h := buf[x0/gemmNR*panel+q*gemmNR:][:n], w.f16[off+x0:][:n]
				if n == gemmNR && haveF16C {
					widenF16AVX2(d, h)
					continue
				}
				for x := range d {
					d[x] = safetensors.F16ToF32(h[x])
				}
			}
		}
		if pad := ng % gemmNR; pad != 0 {
			last := ng / gemmNR
			clear(buf[last*panel+q*gemmNR+pad:][:gemmNR-pad])
		}
	}
}
