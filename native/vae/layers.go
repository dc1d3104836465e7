package vae

import (
	"context"
	"log/slog"
	"math"
	"slices"
	"sync"

	"github.com/modelrt/modelrt/native/kernels"
)

// groupNormEps is diffusers' resnet_eps for the VAE; every GroupNorm in it (resnets, mid-block
// attention, conv_norm_out) uses it.
const groupNormEps = 1e-6

// pass is one Encode or Decode call: its context, checked between the steps of the network
// (each resnet, attention and resampling conv) so that a cancelled call stops within one step
// instead of running to the end.
type pass struct {
	ctx context.Context
	// free holds released activations by length; alloc hands them out again without zeroing
	// (every producer writes all of its output), which saves the allocator's clearing of a
	// fresh buffer and keeps the memory warm in cache.
	free map[int][][]float32
	// shared, when not nil, takes the activations the pass is done with (dropFree, finish) and
	// hands them to later passes.
	shared *actPool
}

// alloc returns an activation of the shape: a released one of the same length if there is one
// (its values arbitrary), else one from p.shared, else a new one. p may be nil (no reuse).
func (p *pass) alloc(b, c, h, w int) tensor {
	n := b * c * h * w
	if p != nil {
		if l := p.free[n]; len(l) > 0 {
			d := l[len(l)-1]
			p.free[n] = l[:len(l)-1]
			return tensor{data: d, b: b, c: c, h: h, w: w}
		}
		if d := p.shared.get(n); d != nil {
			return tensor{data: d, b: b, c: c, h: h, w: w}
		}
	}
	return newTensor(b, c, h, w)
}

// dropFree gives up the released activations except those of the given lengths (to p.shared,
// or to the collector), so that sizes a pass will not ask for again are not held to its end
// (holding all of them cost ~90 MiB of peak RSS on the 256² VAE).
func (p *pass) dropFree(keep ...int) {
	if p == nil {
		return
	}
	for n, l := range p.free {
		if !slices.Contains(keep, n) {
			for _, d := range l {
				p.shared.put(d)
			}
			delete(p.free, n)
		}
	}
}

// finish hands the pass's released activations to p.shared.
func (p *pass) finish() { p.dropFree() }

// actPool keeps activations between passes of one model, by length, up to actPoolMax bytes: a
// fresh activation costs the kernel's page faults and the allocator's zeroing, ~5 ms for a
// 16 MiB one (the 64-channel maps at 256²), and an encode or decode makes a few dozen. (A
// sync.Pool per length kept few: the collector, run by the passes' other allocations, emptied
// them between passes.) A nil *actPool keeps nothing.
type actPool struct {
	mu    sync.Mutex
	free  map[int][][]float32
	bytes int
}

// actPoolMax bounds what an actPool holds (bytes): four of the 16 MiB maps at 256² (the
// costliest to fault in). At 256 MiB the plugin's peak RSS over an encode and a decode grew by
// ~120 MiB (what encode leaves is held while decode allocates its other sizes).
const actPoolMax = 64 << 20

// get returns a kept activation of n values (its values arbitrary), or nil.
func (a *actPool) get(n int) []float32 {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.free[n]
	if len(l) == 0 {
		return nil
	}
	d := l[len(l)-1]
	a.free[n] = l[:len(l)-1]
	a.bytes -= 4 * n
	return d
}

// put keeps d for a later get of its length, unless that would exceed actPoolMax.
func (a *actPool) put(d []float32) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.bytes+4*len(d) > actPoolMax {
		return
	}
	if a.free == nil {
		a.free = map[int][][]float32{}
	}
	a.free[len(d)] = append(a.free[len(d)], d)
	a.bytes += 4 * len(d)
}

// release hands t back to alloc; nothing may read t afterwards. p may be nil.
func (p *pass) release(t tensor) {
	if p == nil {
		return
	}
	if p.free == nil {
		p.free = map[int][][]float32{}
	}
	p.free[len(t.data)] = append(p.free[len(t.data)], t.data)
}

// testHookStep, when set (tests only), is called at every check of a pass.
var testHookStep func()

// check returns the context's error, if it has ended.
func (p *pass) check() error {
	if testHookStep != nil {
		testHookStep()
	}
	return p.ctx.Err()
}

// tensor is an NCHW activation.
type tensor struct {
	data       []float32
	b, c, h, w int
}

func (t tensor) shape() []int { return []int{t.b, t.c, t.h, t.w} }

func newTensor(b, c, h, w int) tensor {
	return tensor{data: make([]float32, b*c*h*w), b: b, c: c, h: h, w: w}
}

// conv2d: weight (Cout,Cin,K,K), bias (Cout); zero padding top/bottom/left/right.
type conv2d struct {
	weight, bias         []float32
	cin, cout, k, stride int
	pad                  [4]int
	// prep keeps the fast paths' transforms of weight across calls (nil: computed per call).
	prep *kernels.ConvWeights
}

// Forward: x (B,Cin,H,W) → (B,Cout,H',W'), the output from p.alloc.
func (l *conv2d) Forward(p *pass, x tensor) tensor {
	s := kernels.Conv2DShape{B: x.b, Cin: x.c, H: x.h, W: x.w, Cout: l.cout, KH: l.k, KW: l.k, Stride: l.stride,
		PadTop: l.pad[0], PadBottom: l.pad[1], PadLeft: l.pad[2], PadRight: l.pad[3]}
	y := p.alloc(x.b, l.cout, s.OutH(), s.OutW())
	if l.prep != nil {
		kernels.Conv2DWeights(y.data, x.data, l.prep, l.bias, s)
	} else {
		kernels.Conv2D(y.data, x.data, l.weight, l.bias, s)
	}
	return y
}

// groupNorm: gamma, beta (C).
type groupNorm struct {
	gamma, beta []float32
	groups      int
}

// Forward: x (B,C,H,W) → GroupNorm(x), followed by SiLU when silu is set.
func (l *groupNorm) Forward(p *pass, x tensor, silu bool) tensor {
	y := p.alloc(x.b, x.c, x.h, x.w)
	if silu {
		kernels.GroupNormSiLU(y.data, x.data, l.gamma, l.beta, x.b, x.c, x.h*x.w, l.groups, groupNormEps)
	} else {
		kernels.GroupNorm(y.data, x.data, l.gamma, l.beta, x.b, x.c, x.h*x.w, l.groups, groupNormEps)
	}
	return y
}

// forwardInPlace is Forward(x, true) written over x, for an activation nothing reads again: it
// saves allocating (and zeroing) one activation.
func (l *groupNorm) forwardInPlace(x tensor) tensor {
	kernels.GroupNormSiLU(x.data, x.data, l.gamma, l.beta, x.b, x.c, x.h*x.w, l.groups, groupNormEps)
	return x
}

// addInto adds src to dst element-wise (a residual connection).
func addInto(dst, src tensor) { kernels.Add(dst.data, src.data) }

// resnetBlock is diffusers' ResnetBlock2D without a time embedding:
// out = shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x)))))), shortcut a 1×1 conv when the
// channel count changes and the identity otherwise.
type resnetBlock struct {
	norm1, norm2 groupNorm
	conv1, conv2 conv2d
	shortcut     *conv2d
}

// Forward releases x (to p) once it has read it.
func (r *resnetBlock) Forward(p *pass, x tensor) tensor {
	n := r.norm1.Forward(p, x, true)
	h := r.conv1.Forward(p, n)
	p.release(n)
	n = r.norm2.forwardInPlace(h)
	h = r.conv2.Forward(p, n)
	p.release(n)
	if r.shortcut != nil {
		s := r.shortcut.Forward(p, x)
		p.release(x)
		x = s
	}
	addInto(h, x)
	p.release(x)
	return h
}

// attention is the mid block's single-head self-attention over the H·W positions:
// out = x + to_out(softmax(q·kᵀ/sqrt(C))·v) with q, k, v = to_q, to_k, to_v of group_norm(x).
// The linears act on channels, so they run as 1×1 convs over the NCHW map.
type attention struct {
	norm          groupNorm
	q, k, v, proj conv2d
}

// Forward releases x (to p) once it has read it.
func (a *attention) Forward(p *pass, x tensor) (tensor, error) {
	n := a.norm.Forward(p, x, false)
	q, k, v := a.q.Forward(p, n), a.k.Forward(p, n), a.v.Forward(p, n)
	p.release(n)
	o := p.alloc(x.b, x.c, x.h, x.w)
	// Checked between blocks of query rows too: the attention is quadratic in the positions.
	if !kernels.SpatialAttentionStoppable(o.data, q.data, k.data, v.data, x.b, x.c, x.h*x.w, float32(1/math.Sqrt(float64(x.c))),
		func() bool { return p.ctx.Err() != nil }) {
		return tensor{}, p.ctx.Err()
	}
	p.release(q)
	p.release(k)
	p.release(v)
	y := a.proj.Forward(p, o)
	p.release(o)
	addInto(y, x)
	p.release(x)
	return y, nil
}

// midBlock is UNetMidBlock2D: resnet, attention (optional), resnet.
type midBlock struct {
	res0, res1 resnetBlock
	attn       *attention
}

func (m *midBlock) Forward(p *pass, x tensor) (tensor, error) {
	if err := p.check(); err != nil {
		return tensor{}, err
	}
	x = m.res0.Forward(p, x)
	if m.attn != nil {
		if err := p.check(); err != nil {
			return tensor{}, err
		}
		var err error
		if x, err = m.attn.Forward(p, x); err != nil {
			return tensor{}, err
		}
	}
	if err := p.check(); err != nil {
		return tensor{}, err
	}
	return m.res1.Forward(p, x), nil
}

// downBlock is DownEncoderBlock2D: resnets, then (all but the last block) Downsample2D, a 3×3
// stride-2 conv after a (0,1,0,1) zero pad, which halves H and W.
type downBlock struct {
	resnets []resnetBlock
	down    *conv2d
}

func (d *downBlock) Forward(p *pass, x tensor) (tensor, error) {
	for i := range d.resnets {
		if err := p.check(); err != nil {
			return tensor{}, err
		}
		x = d.resnets[i].Forward(p, x)
	}
	if d.down != nil {
		if err := p.check(); err != nil {
			return tensor{}, err
		}
		y := d.down.Forward(p, x)
		p.release(x)
		// Activations of the old resolution never come back in this pass.
		p.dropFree()
		x = y
	}
	return x, nil
}

// upBlock is UpDecoderBlock2D: resnets, then (all but the last block) Upsample2D, nearest 2×
// upsampling followed by a 3×3 conv.
type upBlock struct {
	resnets []resnetBlock
	up      *conv2d
}

func (u *upBlock) Forward(p *pass, x tensor) (tensor, error) {
	for i := range u.resnets {
		if err := p.check(); err != nil {
			return tensor{}, err
		}
		x = u.resnets[i].Forward(p, x)
	}
	if u.up != nil {
		if err := p.check(); err != nil {
			return tensor{}, err
		}
		y := p.alloc(x.b, x.c, 2*x.h, 2*x.w)
		kernels.UpsampleNearest2x(y.data, x.data, x.b*x.c, x.h, x.w)
		p.release(x)
		x = u.up.Forward(p, y)
		p.release(y)
		// Only the new resolution's sizes come back (y's is the next block's input size).
		p.dropFree(len(y.data))
	}
	return x, nil
}

// encoder: image (B,Cin,H,W) → moments (B,2L,H/f,W/f).
type encoder struct {
	convIn  conv2d
	down    []downBlock
	mid     midBlock
	normOut groupNorm
	convOut conv2d
}

func (e *encoder) Forward(p *pass, x tensor) (tensor, error) {
	x = e.convIn.Forward(p, x) // from here on every activation is the pass's own
	var err error
	for i := range e.down {
		if x, err = e.down[i].Forward(p, x); err != nil {
			return tensor{}, err
		}
		slog.Debug("vae: encoder down block done", "block", i, "shape", x.shape())
	}
	if x, err = e.mid.Forward(p, x); err != nil {
		return tensor{}, err
	}
	if err := p.check(); err != nil {
		return tensor{}, err
	}
	return e.convOut.Forward(p, e.normOut.forwardInPlace(x)), nil // x is convIn's or a block's output
}

// decoder: latent (B,L,h,w) → image (B,Cout,h·f,w·f).
type decoder struct {
	convIn  conv2d
	mid     midBlock
	up      []upBlock
	normOut groupNorm
	convOut conv2d
}

func (d *decoder) Forward(p *pass, z tensor) (tensor, error) {
	x := d.convIn.Forward(p, z) // from here on every activation is the pass's own
	x, err := d.mid.Forward(p, x)
	if err != nil {
		return tensor{}, err
	}
	for i := range d.up {
		if x, err = d.up[i].Forward(p, x); err != nil {
			return tensor{}, err
		}
		slog.Debug("vae: decoder up block done", "block", i, "shape", x.shape())
	}
	if err := p.check(); err != nil {
		return tensor{}, err
	}
	return d.convOut.Forward(p, d.normOut.forwardInPlace(x)), nil // x is convIn's or a block's output
}
