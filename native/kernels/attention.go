package kernels

import (
	"fmt"
	"math"
)

// AttentionShape describes a causal multi-head attention step over a KV cache: T new query
// positions per row appended after P positions already cached, in a cache of capacity S ≥ P+T
// positions per (row, head).
type AttentionShape struct {
	B, T, H, D int // rows, new positions, heads, head size
	P, S       int // cached positions before this step, cache capacity
}

// check panics unless the arguments fit s; nk and nv are the lengths of the cache's keys and values.
func (s AttentionShape) check(dst, q []float32, nk, nv int, mask []int64) {
	if s.B <= 0 || s.T <= 0 || s.H <= 0 || s.D <= 0 || s.P < 0 || s.S < s.P+s.T {
		panic(fmt.Sprintf("kernels: bad attention shape %+v", s))
	}
	c := s.H * s.D
	switch {
	case len(q) != s.B*s.T*c:
		panic(fmt.Sprintf("kernels: attention q has %d values, want %d", len(q), s.B*s.T*c))
	case len(dst) != s.B*s.T*c:
		panic(fmt.Sprintf("kernels: attention dst has %d values, want %d", len(dst), s.B*s.T*c))
	case nk != s.B*s.H*s.S*s.D || nv != nk:
		panic(fmt.Sprintf("kernels: attention k/v have %d/%d values, want %d", nk, nv, s.B*s.H*s.S*s.D))
	case mask != nil && len(mask) != s.B*(s.P+s.T):
		panic(fmt.Sprintf("kernels: attention mask has %d values, want %d", len(mask), s.B*(s.P+s.T)))
	}
}

// AttentionNaive is the reference for Attention, in float64.
func AttentionNaive(dst, q, k, v []float32, mask []int64, s AttentionShape) {
	s.check(dst, q, len(k), len(v), mask)
	c, l := s.H*s.D, s.P+s.T
	scale := 1 / math.Sqrt(float64(s.D))
	w := make([]float64, l)
	for b := 0; b < s.B; b++ {
		for h := 0; h < s.H; h++ {
			kv := (b*s.H + h) * s.S * s.D
			for t := 0; t < s.T; t++ {
				qr := q[(b*s.T+t)*c+h*s.D:][:s.D]
				vis := s.P + t + 1 // causally visible keys
				any := false
				for j := 0; j < vis; j++ {
					any = any || mask == nil || mask[b*l+j] != 0
				}
				m := math.Inf(-1)
				for j := 0; j < vis; j++ {
					w[j] = math.Inf(-1)
					if !any {
						w[j] = 0 // no unmasked key: uniform over the visible ones
					} else if mask == nil || mask[b*l+j] != 0 {
						var d float64
						for e := 0; e < s.D; e++ {
							d += float64(qr[e]) * float64(k[kv+j*s.D+e])
						}
						w[j] = d * scale
					}
					m = math.Max(m, w[j])
				}
				var sum float64
				for j := 0; j < vis; j++ {
					w[j] = math.Exp(w[j] - m)
					sum += w[j]
				}
				out := dst[(b*s.T+t)*c+h*s.D:][:s.D]
				for e := 0; e < s.D; e++ {
					var o float64
					for j := 0; j < vis; j++ {
						o += w[j] * float64(v[kv+j*s.D+e])
					}
					out[e] = float32(o / sum)
				}
			}
		}
	}
}

// Attention computes causal scaled-dot-product attention of T new queries against the cache,
// reading keys and values in place:
//
//	q, dst: (B,T,H·D), head h in columns h·D..(h+1)·D
//	k, v:   (B,H,S,D), positions [0,P+T) filled (the caller has appended this step's keys)
//	mask:   nil or (B,P+T), 0 = padding key, never attended
//	dst[b,t,h] = Σ_j softmax_j(q·k_j / sqrt(D)) · v_j   over keys j ≤ P+t with mask[b,j] ≠ 0
//
// A query that sees no unmasked key (a padding position before a left-padded row's first token)
// attends uniformly to all its visible keys, as Hugging Face's eager attention does; its output
// is finite and nothing should use it.
func Attention(dst, q, k, v []float32, mask []int64, s AttentionShape) {
	s.check(dst, q, len(k), len(v), mask)
	runAttention(attentionJob{s: s, dst: dst, q: q, k: k, v: v, mask: mask})
}

// runAttention runs job j (its scale set here) on the worker pool.
func runAttention(j attentionJob) {
	s := j.s
	j.scale = float32(1 / math.Sqrt(float64(s.D)))
	p := acquire()
	defer p.release()
	p.attn = j
	// One item per (b, h, t); queries of one head are contiguous so a chunk reuses its keys.
	n := s.B * s.H * s.T
	grain := max(1, n/(8*p.workers))
	if j.k16 == nil && s.T >= attnGemmMinT && useSIMD && useAVX512 {
		// A prefill over a float32 cache: one item per (b, h), its scores as a product on the
		// GEMM kernels. (A half-precision cache is read query by query, widened as read.)
		p.attn.gemm = true
		n, grain = s.B*s.H, 1
	}
	if s.B*s.H*s.T*(s.P+s.T)*s.D < rowsMinWork {
		grain = n
	}
	p.run(&p.attn, n, grain)
	p.attn = attentionJob{}
}

// attnGemmMinT is the number of new positions from which Attention computes a head's scores as
// one product (attentionJob.head) rather than query by query: the keys are transposed once per
// head and call, which pays off once several queries read them.
const attnGemmMinT = 8

type attentionJob struct {
	s        AttentionShape
	dst, q   []float32
	k, v     []float32
	k16, v16 []uint16 // AttentionF16's cache, half-precision bits, instead of k and v
	mask     []int64
	scale    float32
	gemm     bool // items are (b, h) pairs computed by head
}

func (j *attentionJob) chunk(w, lo, hi int) {
	if j.gemm {
		for it := lo; it < hi; it++ {
			j.head(w, it/j.s.H, it%j.s.H)
		}
		return
	}
	s := j.s
	c, l := s.H*s.D, s.P+s.T
	scores := thePool.buf(w, l)
	for it := lo; it < hi; it++ {
		t := it % s.T
		bh := it / s.T
		b, h := bh/s.H, bh%s.H
		kv := bh * s.S * s.D
		qr := j.q[(b*s.T+t)*c+h*s.D:][:s.D]
		out := j.dst[(b*s.T+t)*c+h*s.D:][:s.D]
		vis := s.P + t + 1
		var mrow []int64
		if j.mask != nil {
			mrow = j.mask[b*l : b*l+vis]
		}
		sc := scores[:vis]
		m := float32(math.Inf(-1))
		seen := false
		for jj := range sc {
			if mrow != nil && mrow[jj] == 0 {
				sc[jj] = float32(math.Inf(-1))
				continue
			}
			seen = true
			var d float32
			if j.k16 != nil {
				d = dotF16(qr, j.k16[kv+jj*s.D:][:s.D]) * j.scale
			} else {
				d = dotInner(qr, j.k[kv+jj*s.D:][:s.D]) * j.scale
			}
			sc[jj] = d
			m = max(m, d)
		}
		if !seen {
			for jj := range sc {
				sc[jj] = 0
			}
			m = 0
		}
		var sum float32
		for jj, e := range sc {
			x := float32(0)
			if !math.IsInf(float64(e), -1) {
				x = float32(math.Exp(float64(e - m)))
			}
			sc[jj] = x
			sum += x
		}
		clear(out)
		if j.v16 != nil {
			axpyPanelF16(out, sc, j.v16[kv:], s.D)
		} else if useSIMD {
			// All value rows in one call, four per load and store of out; each element is the
			// same FMA chain in key order as row by row (a masked key's weight is 0 and adds 0).
			axpyPanelF32(out, sc, j.v[kv:], s.D)
		} else {
			for jj, wgt := range sc {
				if wgt == 0 {
					continue
				}
				axpyVec(wgt, j.v[kv+jj*s.D:], out)
			}
		}
		inv := 1 / sum
		for e := range out {
			out[e] *= inv
		}
	}
}

// head computes the T queries of row b, head h on the AVX-512 GEMM kernels: the visible keys,
// transposed into panels of 16 (zero past P+T, up to a whole 64-key group), are the B operand
// of the queries' six-row strips (packA), so the raw scores q·k of six queries and 64 keys come
// from one gemm<r>x64PfAVX512 call, each a single FMA chain over d from zero — the same bits for
// a query whichever strip and group it falls in. expScaledSumAVX512 then turns a query's raw
// scores into exp(q·k·scale − max) and their sum, and the value rows are summed as in chunk.
func (j *attentionJob) head(w, b, h int) {
	s := j.s
	c, l, d := s.H*s.D, s.P+s.T, s.D
	const group = gemmNP * gemmNR // keys per kernel call
	lp := (l + group - 1) / group * group
	strips := (s.T + gemmMR - 1) / gemmMR
	buf := thePool.buf(w, lp*d+strips*gemmMR*d+gemmMR*lp)
	kp, qp, sc := buf[:lp*d], buf[lp*d:][:strips*gemmMR*d], buf[lp*d+strips*gemmMR*d:][:gemmMR*lp]
	kv := (b*s.H + h) * s.S * d
	keys := j.k[kv:][:l*d]
	for jp := 0; jp < lp/gemmNR; jp++ {
		pan := kp[jp*d*gemmNR:][:d*gemmNR]
		for x := 0; x < gemmNR; x++ {
			key := jp*gemmNR + x
			if key >= l {
				for e := 0; e < d; e++ {
					pan[e*gemmNR+x] = 0
				}
				continue
			}
			for e, v := range keys[key*d:][:d] {
				pan[e*gemmNR+x] = v
			}
		}
	}
	packA(qp, s.T, d, j.q[b*s.T*c+h*d:], c)
	var zero [group]float32
	bs := d * gemmNR
	for st := 0; st < strips; st++ {
		t0 := st * gemmMR
		r := min(gemmMR, s.T-t0)
		a := qp[st*gemmMR*d:][:gemmMR*d]
		for g := 0; g*group < s.P+t0+r; g++ {
			bk := kp[g*gemmNP*bs:][:gemmNP*bs]
			ct := sc[g*group:]
			switch r {
			case 6:
				gemm6x64PfAVX512(a, bk, bs, ct, lp, zero[:], nil, 0)
			case 5:
				gemm5x64PfAVX512(a, bk, bs, ct, lp, zero[:], nil, 0)
			case 4:
				gemm4x64PfAVX512(a, bk, bs, ct, lp, zero[:], nil, 0)
			case 3:
				gemm3x64PfAVX512(a, bk, bs, ct, lp, zero[:], nil, 0)
			case 2:
				gemm2x64PfAVX512(a, bk, bs, ct, lp, zero[:], nil, 0)
			default:
				gemm1x64PfAVX512(a, bk, bs, ct, lp, zero[:], nil, 0)
			}
		}
		for i := 0; i < r; i++ {
			t := t0 + i
			vis := s.P + t + 1
			row := sc[i*lp:][:lp]
			m := float32(math.Inf(-1))
			if j.mask == nil {
				for _, e := range row[:vis] {
					m = max(m, e)
				}
			} else {
				for jj, on := range j.mask[b*l:][:vis] {
					if on == 0 {
						row[jj] = float32(math.Inf(-1))
						continue
					}
					m = max(m, row[jj])
				}
			}
			if math.IsInf(float64(m), -1) { // no unmasked key: uniform over the visible ones
				clear(row[:vis])
				m = 0
			}
			sum := expScaledSumAVX512(row[:(vis+15)&^15], vis, j.scale, m*j.scale)
			out := j.dst[(b*s.T+t)*c+h*d:][:d]
			clear(out)
			axpyPanelF32(out, row[:vis], j.v[kv:], d)
			inv := 1 / sum
			for e := range out {
				out[e] *= inv
			}
		}
	}
}

// SplitQKV copies the rows of a fused query‖key‖value projection into the queries and the KV
// cache, on the worker pool when large:
//
//	qkv: (B,T,3·H·D) · q: (B,T,H·D) · k, v: (B,H,S,D), written at positions P..P+T−1
func SplitQKV(q, k, v, qkv []float32, s AttentionShape) {
	c := s.H * s.D
	if len(qkv) != 3*len(q) {
		panic(fmt.Sprintf("kernels: SplitQKV: qkv has %d values, want 3×%d", len(qkv), len(q)))
	}
	s.check(q, q, len(k), len(v), nil)
	p := acquire()
	defer p.release()
	p.split = splitJob{s: s, q: q, k: k, v: v, qkv: qkv}
	rows := s.B * s.T
	p.run(&p.split, rows, max(1, rowsMinWork/(3*c)))
	p.split = splitJob{}
}

type splitJob struct {
	s            AttentionShape
	q, k, v, qkv []float32
}

// chunk splits rows [lo,hi) of the B·T new positions.
func (j *splitJob) chunk(_, lo, hi int) {
	s := j.s
	c, d := s.H*s.D, s.D
	for i := lo; i < hi; i++ {
		b, t := i/s.T, i%s.T
		r := j.qkv[i*3*c:][:3*c]
		copy(j.q[i*c:][:c], r[:c])
		for h := 0; h < s.H; h++ {
			at := ((b*s.H+h)*s.S + s.P + t) * d
			copy(j.k[at:at+d], r[c+h*d:][:d])
			copy(j.v[at:at+d], r[2*c+h*d:][:d])
		}
	}
}
