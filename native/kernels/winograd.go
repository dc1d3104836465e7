package kernels

import "sync"

// Winograd F(2×2,3×3) for 3×3 stride-1 convolutions (Lavin & Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2015): each 2×2 block of outputs ("tile") is computed from the
// 4×4 input patch around it as Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A, summed over input channels. The
// sum over channels of the 16 element-wise products is 16 matrix products
//
//	M[ξ] (Cout × tiles) = U[ξ] (Cout × Cin) · V[ξ] (Cin × tiles),  ξ = 0..15
//
// on the packed GEMM: 16 multiply-adds per tile and channel pair where the direct convolution
// needs 36 (2.25× fewer), for three cheap transforms. The transforms' constants are 0, ±1 and
// ½, so F(2×2,3×3) loses little accuracy (winogradTol in the tests).

// winogradBandBudget bounds each worker's transformed-input (V) and product (M) buffers (float32
// values, 512 KiB each) unless a band of 64 tiles needs more: a band of tile rows is
// transformed, multiplied and transformed back by one worker while its V and M are still in
// that core's L2. Whole-image bands (16 MiB) sent V and M through memory twice each, which cost
// more than the products at 64 channels; 512 KiB measured better than 1 and 2 MiB at 64 and 128
// channels (BenchmarkConv2D).
const winogradBandBudget = 1 << 17

// winogradMinChannels is the channel count from which Conv2D takes the Winograd path: its
// products have K = Cin, and below this the GEMM's packing outweighs the saved multiplies.
const winogradMinChannels = 16

var winogradPool = sync.Pool{New: func() any { return new([]float32) }}

// useWinograd reports whether Conv2D computes s with conv3x3Winograd.
func useWinograd(s Conv2DShape) bool {
	return s.KH == 3 && s.KW == 3 && s.Stride == 1 && s.Cin >= winogradMinChannels && s.Cout >= winogradMinChannels && useSIMD
}

// winogradWeights is the float64 reference of winogradWeightsGemm for F(2×2,3×3). It writes U:
// 16 matrices (Cout,Cin), U[ξ][co,ci] = (G g Gᵀ)[ξ] for the 3×3
// kernel g = weight[co,ci], with G = [[1,0,0],[½,½,½],[½,−½,½],[0,0,1]], each in packA's layout
// (strips of gemmMR output channels interleaved by input channel, zero rows past Cout) at
// u[ξ·winogradStripLen(cout,cin):], so the products read them without packing.
func winogradWeights(u, weight []float32, cout, cin int) {
	su := winogradStripLen(cout, cin)
	winogradZeroRows(u, 16, cout, cin)
	parallelRange(cout*cin, 64, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			co, ci := r/cin, r%cin
			g := weight[r*9:][:9]
			var t [4][3]float32 // G·g
			for j := 0; j < 3; j++ {
				g0, g1, g2 := g[j], g[3+j], g[6+j]
				t[0][j], t[1][j], t[2][j], t[3][j] = g0, (g0+g1+g2)*0.5, (g0-g1+g2)*0.5, g2
			}
			o := (co/gemmMR)*gemmMR*cin + ci*gemmMR + co%gemmMR
			for i := 0; i < 4; i++ {
				a, b, c := t[i][0], t[i][1], t[i][2]
				u[(i*4+0)*su+o] = a
				u[(i*4+1)*su+o] = (a + b + c) * 0.5
				u[(i*4+2)*su+o] = (a - b + c) * 0.5
				u[(i*4+3)*su+o] = c
			}
		}
	})
}

// winogradZeroRows clears the rows past Cout in the last strip of each of the nx packed U
// matrices.
func winogradZeroRows(u []float32, nx, cout, cin int) {
	su := winogradStripLen(cout, cin)
	for co := cout; co%gemmMR != 0; co++ {
		for x := 0; x < nx; x++ {
			blk := u[x*su+(co/gemmMR)*gemmMR*cin:]
			for ci := 0; ci < cin; ci++ {
				blk[ci*gemmMR+co%gemmMR] = 0
			}
		}
	}
}

// winogradStripLen is the length of one packed U matrix: Cout rounded up to gemmMR, times Cin.
func winogradStripLen(cout, cin int) int { return (cout + gemmMR - 1) / gemmMR * gemmMR * cin }

// winogradSkew (one cache line of float32) pads the distance between consecutive V[ξ] and
// M[ξ] matrices. Unpadded, it is a multiple of 4 KiB (often 1 MiB), so the 16 streams the
// transforms write and read at once fall into the same L1 and L2 sets and evict each other:
// measured, the panel scatter of winogradInput took 3× the whole input transform.
const winogradSkew = 16

// winogradPanelLen is the distance between V matrices of nt tiles in panel layout: Cin rows of
// ⌈nt/gemmNR⌉ panels of gemmNR tiles, plus winogradSkew.
func winogradPanelLen(cin, nt int) int { return (nt+gemmNR-1)/gemmNR*gemmNR*cin + winogradSkew }

// winogradOutLen is the distance between M matrices (Cout, nt): Cout·nt plus winogradSkew.
func winogradOutLen(cout, nt int) int { return cout*nt + winogradSkew }

// conv3x3Winograd computes Conv2D for a 3×3 stride-1 shape (any zero padding). U is computed
// once per call, straight into the packed-A layout (winogradWeightsGemm); then each worker
// takes whole bands of tile rows and runs the band's input transform (into the panel layout the micro-kernels read in place), its
// 16 products and its output transform on its own, with no barrier between the steps.
func conv3x3Winograd(out, inp, weight, bias []float32, s Conv2DShape) {
	conv3x3WinogradW(out, inp, weight, nil, bias, s)
}

// conv3x3WinogradW is conv3x3Winograd taking U from cw when it is not nil.
func conv3x3WinogradW(out, inp, weight []float32, cw *ConvWeights, bias []float32, s Conv2DShape) {
	oh, ow := s.OutH(), s.OutW()
	tile, nx := 2, 16 // output tile side, transformed matrices
	if useWinograd43(s) {
		tile, nx = 4, 36
	}
	th, tw := (oh+tile-1)/tile, (ow+tile-1)/tile
	u, done := winogradU(weight, cw, s.Cout, s.Cin, tile)
	defer done()

	cb := s.Cout
	if tile == 4 && s.Cout > winograd43WholeCout {
		cb = winograd43CoutBlock
	}

	p := acquire()
	defer p.release()
	// Bands fit winogradBandBudget (bandRows: at least 64 tiles, two bands per worker).
	rows, bands := bandRows(th, tw, winogradBandBudget/(nx*max(s.Cin, cb)*tw), p.workers)
	if tile == 4 {
		// F(4×4,3×3) keeps whole groups of 64 tiles (and pairs of tile rows) even when that
		// leaves fewer than two bands per worker: the products are then split over output
		// channels instead (winograd43Split).
		rows = max(rows, (gemmNP*gemmNR+tw-1)/tw)
		if winograd43Pairs(tw) {
			rows += rows % 2 // whole pairs of tile rows (th is even: useWinograd43)
		}
		bands = (th + rows - 1) / rows
	}
	j := &winogradJob{p: p, out: out, inp: inp, u: u, bias: bias, s: s, oh: oh, ow: ow, th: th, tw: tw, rows: rows, bands: bands,
		tile: tile, nx: nx, cb: cb, bufs: make([]*[]float32, p.workers)}
	if tile == 4 && s.B*bands < 2*p.workers {
		winograd43Split(j)
	} else {
		p.run(j, s.B*bands, 1)
	}
	putAll(&winogradPool, j.bufs)
}

// winograd43Split runs j in two steps when it has fewer bands than two per worker (a 32×32
// output is one band of 64 tiles): the input transforms of every band, spread over blocks of
// input channels, into one shared V; then the products and output transforms, spread over
// blocks of output channels (at least two per worker, each a multiple of gemmMR channels).
func winograd43Split(j *winogradJob) {
	s, p := j.s, j.p
	nb := s.B * j.bands
	blocks := max((s.Cout+j.cb-1)/j.cb, (2*p.workers+nb-1)/nb)
	j.cb = ((s.Cout+blocks-1)/blocks + gemmMR - 1) / gemmMR * gemmMR
	j.blocks = (s.Cout + j.cb - 1) / j.cb
	sv := winogradPanelLen(s.Cin, j.rows*j.tw)
	pv := winogradPool.Get().(*[]float32)
	defer winogradPool.Put(pv)
	j.vall = growTo(pv, nb*j.nx*sv)
	const chans = 16 // input channels per item of the input transforms
	cchunks := (s.Cin + chans - 1) / chans
	in := &winograd43InputJob{j: j, sv: sv, chans: chans, cchunks: cchunks}
	p.run(in, nb*cchunks, 1)
	p.run(j, nb*j.blocks, 1)
	j.vall = nil
}

// winograd43InputJob is the first step of winograd43Split: item i is input channels
// [c·chans, (c+1)·chans) of band i/cchunks (counted over batch items), c = i%cchunks.
type winograd43InputJob struct {
	j                  *winogradJob
	sv, chans, cchunks int
}

func (in *winograd43InputJob) chunk(w, lo, hi int) {
	j, s := in.j, in.j.s
	tmp := j.p.buf(w, winograd43Scratch(j.tw))
	for i := lo; i < hi; i++ {
		bb, c := i/in.cchunks, i%in.cchunks
		b, band := bb/j.bands, bb%j.bands
		ty0 := band * j.rows
		ty1 := min(j.th, ty0+j.rows)
		nt := (ty1 - ty0) * j.tw
		v := j.vall[bb*j.nx*in.sv:][:j.nx*winogradPanelLen(s.Cin, nt)]
		src := j.inp[b*s.Cin*s.H*s.W : (b+1)*s.Cin*s.H*s.W]
		winograd43Input(v, src, s, ty0, ty1, j.tw, c*in.chans, min(s.Cin, (c+1)*in.chans), tmp)
	}
}

// winogradJob is conv3x3Winograd's work: item i is band i%bands of batch item i/bands (or,
// after winograd43Split's input step, output channel block i%blocks of band i/blocks).
type winogradJob struct {
	p                 *workPool
	out, inp, u, bias []float32
	s                 Conv2DShape
	oh, ow, th, tw    int
	rows, bands       int
	tile, nx          int          // F(2×2,3×3): 2, 16; F(4×4,3×3): 4, 36
	cb                int          // output channels per product and output transform (a multiple of gemmMR, or Cout)
	bufs              []*[]float32 // per worker: V, M and the transforms' scratch
	vall              []float32    // winograd43Split: every band's V, winogradPanelLen(Cin, rows·tw)·nx apart
	blocks            int          // winograd43Split: output channel blocks of cb
}

func (j *winogradJob) chunk(w, lo, hi int) {
	s := j.s
	maxNT := j.rows * j.tw
	sv, sm := winogradPanelLen(s.Cin, maxNT), winogradOutLen(j.cb, maxNT)
	scratch := 8*(2*j.tw+2) + 16*j.tw
	if j.tile == 4 {
		scratch = winograd43Scratch(j.tw)
	}
	if j.bufs[w] == nil {
		j.bufs[w] = winogradPool.Get().(*[]float32)
	}
	nv := j.nx * sv // the band's own V; none when winograd43Split made them all
	if j.vall != nil {
		nv = 0
	}
	buf := growTo(j.bufs[w], nv+j.nx*sm+scratch)
	vbuf, mbuf, tmp := buf[:nv], buf[nv:][:j.nx*sm], buf[nv+j.nx*sm:]
	for i := lo; i < hi; i++ {
		bb, co0, co1 := i, 0, s.Cout
		if j.vall != nil {
			bb = i / j.blocks
			co0 = i % j.blocks * j.cb
			co1 = min(s.Cout, co0+j.cb)
		}
		b, band := bb/j.bands, bb%j.bands
		ty0 := band * j.rows
		ty1 := min(j.th, ty0+j.rows)
		nt := (ty1 - ty0) * j.tw
		sv := winogradPanelLen(s.Cin, nt)
		var v []float32
		if j.vall != nil {
			v = j.vall[bb*j.nx*winogradPanelLen(s.Cin, maxNT):][:j.nx*sv]
		} else {
			v = vbuf[:j.nx*sv]
			src := j.inp[b*s.Cin*s.H*s.W : (b+1)*s.Cin*s.H*s.W]
			if j.tile == 4 {
				winograd43Input(v, src, s, ty0, ty1, j.tw, 0, s.Cin, tmp)
			} else {
				winogradInput(v, src, s, ty0, ty1, j.tw, tmp)
			}
		}
		dst := j.out[b*s.Cout*j.oh*j.ow : (b+1)*s.Cout*j.oh*j.ow]
		j.products(w, v, dst, ty0, ty1, co0, co1, mbuf, tmp)
	}
}

// products runs the band's products for output channels [co0,co1), in blocks of cb (the
// block's 36 product matrices M stay in L2 until its output transform reads them; all of Cout
// at 256 channels would not), and their output transforms into dst (one image).
func (j *winogradJob) products(w int, v, dst []float32, ty0, ty1, co0, co1 int, mbuf, tmp []float32) {
	s := j.s
	nt := (ty1 - ty0) * j.tw
	sv := winogradPanelLen(s.Cin, nt)
	su := winogradStripLen(s.Cout, s.Cin)
	groups := (nt + gemmNP*gemmNR - 1) / (gemmNP * gemmNR)
	for c0 := co0; c0 < co1; c0 += j.cb {
		cn := min(j.cb, co1-c0)
		sm := winogradOutLen(cn, nt)
		m := mbuf[:j.nx*sm]
		mblocks := (cn + gemmMC - 1) / gemmMC
		g := gemmPackedJob{p: j.p, m: cn, n: nt, k: s.Cin, ap: j.u[c0*s.Cin:], w: weights{f32: v, panels: true}, ldb: nt, c: m, ldc: nt,
			groups: groups, mblocks: mblocks, batch: packedBatch{n: j.nx, a: su, b: sv, c: sm}}
		g.chunk(w, 0, j.nx*mblocks*groups)
		var bias []float32
		if j.bias != nil {
			bias = j.bias[c0 : c0+cn]
		}
		d := dst[c0*j.oh*j.ow:]
		if j.tile == 4 {
			winograd43Output(d, m, bias, cn, j.oh, j.ow, ty0, ty1, j.tw, tmp)
		} else {
			winogradOutput(d, m, bias, cn, j.oh, j.ow, ty0, ty1, j.tw, tmp)
		}
	}
}

func growTo(p *[]float32, n int) []float32 {
	if cap(*p) < n {
		*p = make([]float32, n)
	}
	return (*p)[:n]
}

// winogradInput writes V[ξ][ci, t] = (Bᵀ d B)[ξ] for the tiles t of tile rows [ty0,ty1) (t
// counted from ty0's first), d being the 4×4 input patch at (2ty−PadTop, 2tx−PadLeft), zero
// outside the image; Bᵀ = [[1,0,−1,0],[0,1,1,0],[0,−1,1,0],[0,1,0,−1]]. V[ξ] is in the GEMM's
// panel layout (winogradPanelLen): element (ci,t) at ((t/16)·Cin + ci)·16 + t%16, zero past the
// last tile. Per tile row it applies Bᵀ down the four zero-padded input rows once for the whole
// width (neighbouring tiles share two columns), then B across each tile; with AVX-512 and whole
// groups of 16 tiles per row, winogradIn16AVX512 does both for 16 tiles at a time.
func winogradInput(v, src []float32, s Conv2DShape, ty0, ty1, tw int, scratch []float32) {
	nt := (ty1 - ty0) * tw
	plane := s.H * s.W
	wp := 2*tw + 2 // padded width the tiles of a row read
	stride := winogradPanelLen(s.Cin, nt)
	simd := useAVX512 && tw%gemmNR == 0 // whole panels of 16 tiles per row: winogradIn16AVX512
	buf := scratch[:8*wp+16*tw]
	var r, c [4][]float32
	for i := range r {
		r[i], c[i] = buf[i*wp:][:wp], buf[(4+i)*wp:][:wp]
	}
	row := buf[8*wp:][:16*tw] // one tile row of one channel: V[ξ] at row[ξ·tw:]
	// Tiles past nt in the last panel are zero.
	if pad := nt % gemmNR; pad != 0 {
		for x := 0; x < 16; x++ {
			for ci := 0; ci < s.Cin; ci++ {
				clear(v[x*stride+((nt/gemmNR)*s.Cin+ci)*gemmNR+pad:][:gemmNR-pad])
			}
		}
	}
	// Tile rows outside, channels inside: the writes to one panel of one V[ξ] are then
	// consecutive (the channels' 16-tile rows are adjacent in the panel layout).
	for ty := ty0; ty < ty1; ty++ {
		t0 := (ty - ty0) * tw
		for ci := 0; ci < s.Cin; ci++ {
			img := src[ci*plane : (ci+1)*plane]
			for i := range r {
				clear(r[i])
				if y := 2*ty - s.PadTop + i; y >= 0 && y < s.H {
					line := img[y*s.W : (y+1)*s.W]
					// r[i][xx] = line[xx − PadLeft] where both exist.
					x0 := max(0, s.PadLeft)
					copy(r[i][x0:], line[max(0, -s.PadLeft):])
				}
			}
			if simd {
				for tx := 0; tx < tw; tx += gemmNR {
					t := t0 + tx
					off := ((t/gemmNR)*s.Cin+ci)*gemmNR + 15*stride + 15
					_ = v[off] // the kernel writes v[ξ·stride+j], ξ, j < 16
					winogradIn16AVX512(v[off-15*stride-15:], stride, buf[2*tx:3*wp+2*tx+34], wp)
				}
				continue
			}
			r0, r1, r2, r3 := r[0], r[1][:wp], r[2][:wp], r[3][:wp]
			c0, c1, c2, c3 := c[0][:wp], c[1][:wp], c[2][:wp], c[3][:wp]
			for x := range r0 {
				c0[x], c1[x], c2[x], c3[x] = r0[x]-r2[x], r1[x]+r2[x], r2[x]-r1[x], r1[x]-r3[x]
			}
			for k := 0; k < 4; k++ {
				ck := c[k][:wp]
				o := row[4*k*tw:][:4*tw]
				o0, o1, o2, o3 := o[:tw], o[tw:2*tw], o[2*tw:3*tw], o[3*tw:]
				for tx := range o0 {
					q := (*[4]float32)(ck[2*tx:])
					o0[tx] = q[0] - q[2]
					o1[tx] = q[1] + q[2]
					o2[tx] = q[2] - q[1]
					o3[tx] = q[1] - q[3]
				}
			}
			winogradScatter(v, row, stride, s.Cin, ci, t0, tw)
		}
	}
}

// winogradScatter writes one channel's tile row (V[ξ] values of tiles t0..t0+tw at
// row[ξ·tw:]) into the panel layout of winogradInput.
func winogradScatter(v, row []float32, stride, cin, ci, t0, tw int) {
	for tx := 0; tx < tw; {
		t := t0 + tx
		off := ((t/gemmNR)*cin+ci)*gemmNR + t%gemmNR
		if t%gemmNR == 0 && tx+gemmNR <= tw {
			// A whole panel row: fixed-size copies compile to vector moves.
			for x := 0; x < 16; x++ {
				*(*[gemmNR]float32)(v[x*stride+off:]) = *(*[gemmNR]float32)(row[x*tw+tx:])
			}
			tx += gemmNR
			continue
		}
		n := min(tw-tx, gemmNR-t%gemmNR)
		for x := 0; x < 16; x++ {
			d, s := v[x*stride+off:][:n], row[x*tw+tx:][:n]
			for e := range d {
				d[e] = s[e]
			}
		}
		tx += n
	}
}

// winogradOutput writes the outputs of tile rows [ty0,ty1): Y = Aᵀ M A + bias with
// Aᵀ = [[1,1,1,0],[0,1,−1,−1]], dropping the outputs past (oh,ow) of the last tiles.
func winogradOutput(dst, m, bias []float32, cout, oh, ow, ty0, ty1, tw int, scratch []float32) {
	nt := (ty1 - ty0) * tw
	stride := winogradOutLen(cout, nt)
	rows := scratch[:2*2*tw]
	simd := useAVX512 && tw%gemmNR == 0 // whole groups of 16 tiles: winogradOut16AVX512
	scalar := tw
	if simd {
		scalar = 0
	}
	for co := 0; co < cout; co++ {
		bv := channelBias(bias, co)
		plane := dst[co*oh*ow : (co+1)*oh*ow]
		for ty := ty0; ty < ty1; ty++ {
			base := co*nt + (ty-ty0)*tw
			y0 := rows[:2*tw]
			y1 := rows[2*tw:][:2*tw]
			direct := 2*ty+1 < oh && ow == 2*tw // both output rows whole: write in place
			if direct {
				y0, y1 = plane[2*ty*ow:][:ow], plane[(2*ty+1)*ow:][:ow]
			}
			sl := func(x int) []float32 { return m[x*stride+base:][:tw] }
			m00, m01, m02, m03 := sl(0), sl(1), sl(2), sl(3)
			m10, m11, m12, m13 := sl(4), sl(5), sl(6), sl(7)
			m20, m21, m22, m23 := sl(8), sl(9), sl(10), sl(11)
			m30, m31, m32, m33 := sl(12), sl(13), sl(14), sl(15)
			if simd {
				for tx := 0; tx < tw; tx += gemmNR {
					_ = m[base+tx+15*stride+15] // the kernel reads m[ξ·stride+j], ξ, j < 16
					winogradOut16AVX512(y0[2*tx:2*tx+32], y1[2*tx:2*tx+32], m[base+tx:], stride, bv[:])
				}
			}
			for tx := range m00[:scalar] {
				// Aᵀ·M: rows a (top output row) and b (bottom), four columns each.
				a0, b0 := m00[tx]+m10[tx]+m20[tx], m10[tx]-m20[tx]-m30[tx]
				a1, b1 := m01[tx]+m11[tx]+m21[tx], m11[tx]-m21[tx]-m31[tx]
				a2, b2 := m02[tx]+m12[tx]+m22[tx], m12[tx]-m22[tx]-m32[tx]
				a3, b3 := m03[tx]+m13[tx]+m23[tx], m13[tx]-m23[tx]-m33[tx]
				t0, t1 := (*[2]float32)(y0[2*tx:]), (*[2]float32)(y1[2*tx:])
				t0[0], t0[1] = a0+a1+a2+bv[0], a1-a2-a3+bv[0]
				t1[0], t1[1] = b0+b1+b2+bv[0], b1-b2-b3+bv[0]
			}
			if direct {
				continue
			}
			if y := 2 * ty; y < oh {
				copy(plane[y*ow:(y+1)*ow], y0)
			}
			if y := 2*ty + 1; y < oh {
				copy(plane[y*ow:(y+1)*ow], y1)
			}
		}
	}
}
