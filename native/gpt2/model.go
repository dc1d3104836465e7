// Package gpt2 is GPT2LMHeadModel's forward pass in pure Go, computed as Hugging Face computes it
// (gelu_new, Conv1D [in,out] weights, 1/sqrt(head_dim) attention scaling, learned positions,
// tied LM head), batched with left padding, over a KV cache so that a decode step costs one
// token's work.
//
// A model is a tree of small structs (Model → Block → Attention, MLP, LayerNorm, Linear), each
// with its own Forward, bound to the tensors of a Hugging Face model directory by name. The math
// lives in native/kernels; this package never imports a backend.
package gpt2

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/modelrt/modelrt/native/kernels"
	"github.com/modelrt/modelrt/sdk/modeldir/quant"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

// ErrInvalidInput marks a Forward call whose ids, mask or length the model cannot accept; the
// plugin maps it to InvalidArgument.
var ErrInvalidInput = errors.New("gpt2: invalid input")

// Linear is a Hugging Face Conv1D: y = x·W + b with W [in,out]. Load and NewRandom keep it in Q,
// packed in 16-column panels (kernels.PackPanels) — float32 in Q.F32, or quantized with
// per-output-channel scales over Out; Weight (row-major) is then nil. A Linear built by hand with
// Weight set works too, unpacked.
type Linear struct {
	Weight  []float32 // (In,Out) row-major; nil when Q holds the weights
	Q       QWeights
	Bias    []float32 // (Out)
	In, Out int
}

// Forward computes dst = x·W + b for rows rows. x: (rows,In); dst: (rows,Out).
func (l *Linear) Forward(dst, x []float32, rows int) {
	dst, x = dst[:rows*l.Out], x[:rows*l.In]
	switch q := &l.Q; {
	case q.DType == quant.F32 && q.Panels:
		kernels.MatMulPanels(dst, x, q.F32, l.Bias, rows, l.In, l.Out)
	case q.DType == quant.Int8 && q.Panels:
		kernels.MatMulPanelsI8(dst, x, q.I8, q.Scale, l.Bias, rows, l.In, l.Out)
	case q.DType == quant.Int8:
		kernels.MatMulI8(dst, x, q.I8, q.Scale, l.Bias, rows, l.In, l.Out)
	case q.DType == quant.F16 && q.Panels:
		kernels.MatMulPanelsF16(dst, x, q.F16, l.Bias, rows, l.In, l.Out)
	case q.DType == quant.F16:
		kernels.MatMulF16(dst, x, q.F16, l.Bias, rows, l.In, l.Out)
	default:
		kernels.MatMul(dst, x, l.Weight, l.Bias, rows, l.In, l.Out)
	}
}

// LayerNorm is torch.nn.LayerNorm over the last axis.
type LayerNorm struct {
	Weight, Bias []float32 // (C)
	Eps          float32
}

// Forward normalizes each row of x (rows,C) into dst.
func (n *LayerNorm) Forward(dst, x []float32) {
	kernels.LayerNorm(dst, x, n.Weight, n.Bias, len(n.Weight), n.Eps)
}

// Attention is GPT-2's causal self-attention: c_attn projects to q‖k‖v, heads are contiguous
// column groups of size HeadDim, c_proj mixes the heads.
type Attention struct {
	CAttn, CProj   Linear
	NHead, HeadDim int
}

// Forward appends the keys and values of the step to the cache of this layer and writes the
// attention output, projected, into s.proj. x: (B·T,C) normalized input.
func (a *Attention) Forward(s *step, layer int, x []float32) {
	c := a.NHead * a.HeadDim
	rows := s.B * s.T
	qkv := s.qkv[:rows*3*c]
	a.CAttn.Forward(qkv, x, rows)
	// Split q‖k‖v: queries to s.q, keys and values into the (B,H,S,D) cache at positions P...
	q := s.q[:rows*c]
	shape := kernels.AttentionShape{B: s.B, T: s.T, H: a.NHead, D: a.HeadDim, P: s.P, S: s.cache.capacity}
	s.cache.split(layer, q, qkv, shape)
	att := s.att[:rows*c]
	s.cache.attend(layer, att, q, s.mask, shape)
	a.CProj.Forward(s.proj[:rows*c], att, rows)
}

// MLP is c_fc → gelu_new → c_proj.
type MLP struct {
	CFC, CProj Linear
}

// Forward writes the MLP of x (rows,C) into dst (rows,C), using hidden (rows,Inner) as scratch.
func (m *MLP) Forward(dst, hidden, x []float32, rows int) {
	h := hidden[:rows*m.CFC.Out]
	m.CFC.Forward(h, x, rows)
	kernels.GeluNew(h, h)
	m.CProj.Forward(dst, h, rows)
}

// Block is one pre-norm transformer layer: x += attn(ln_1(x)); x += mlp(ln_2(x)).
type Block struct {
	LN1  LayerNorm
	Attn Attention
	LN2  LayerNorm
	MLP  MLP
}

// Forward updates the residual stream s.x (B·T,C) in place. Its last residual add is left to
// the next block, or to ForwardContext after the last one (s.pending: x += pending), so that each
// add runs with the LayerNorm after it in one parallel pass (kernels.AddLayerNorm).
func (blk *Block) Forward(s *step, layer int) {
	rows := s.B * s.T
	n := rows * blk.Attn.CProj.Out
	x, h := s.x[:n], s.h[:n]
	blk.ln1(s, h, x)
	blk.Attn.Forward(s, layer, h)
	kernels.AddLayerNorm(h, x, s.proj[:n], blk.LN2.Weight, blk.LN2.Bias, len(blk.LN2.Weight), blk.LN2.Eps)
	blk.MLP.Forward(s.proj[:n], s.hidden, h, rows)
	s.pending = s.proj[:n]
}

// ln1 is h = LN1(x) after the residual add the previous block left pending, if any.
func (blk *Block) ln1(s *step, h, x []float32) {
	if s.pending != nil {
		kernels.AddLayerNorm(h, x, s.pending, blk.LN1.Weight, blk.LN1.Bias, len(blk.LN1.Weight), blk.LN1.Eps)
		s.pending = nil
		return
	}
	blk.LN1.Forward(h, x)
}

// forwardLast is Forward for the last block of a call that wants the logits of each row's last
// position only (a prefill with lastOnly): the keys and values of every position still go to
// the cache, but attention, its projection and the MLP run on the B last rows alone, whose
// results nothing else reads — 63 of 64 rows of the last block's products skipped in a 64-token
// prefill. Only those rows of s.x are updated.
func (blk *Block) forwardLast(s *step, layer int) {
	a := &blk.Attn
	B, T := s.B, s.T
	C := a.NHead * a.HeadDim
	rows := B * T
	x, h := s.x[:rows*C], s.h[:rows*C]
	blk.ln1(s, h, x)
	qkv := s.qkv[:rows*3*C]
	a.CAttn.Forward(qkv, h, rows)
	d, S := a.HeadDim, s.cache.capacity
	s.cache.split(layer, s.q[:rows*C], qkv, kernels.AttentionShape{B: B, T: T, H: a.NHead, D: d, P: s.P, S: S})
	q := s.q[:B*C]
	for b := 0; b < B; b++ {
		copy(q[b*C:][:C], s.q[(b*T+T-1)*C:][:C]) // forward: row b's last query to row b
	}
	// The last query of each row sees the P+T keys: a one-position step after P+T−1 of them.
	att := s.att[:B*C]
	s.cache.attend(layer, att, q, s.mask, kernels.AttentionShape{B: B, T: 1, H: a.NHead, D: d, P: s.P + T - 1, S: S})
	proj := s.proj[:B*C]
	a.CProj.Forward(proj, att, B)
	hl := h[:B*C]
	for b := 0; b < B; b++ {
		xl := x[(b*T+T-1)*C:][:C]
		addInPlace(xl, proj[b*C:][:C])
		blk.LN2.Forward(hl[b*C:][:C], xl)
	}
	blk.MLP.Forward(proj, s.hidden, hl, B)
	for b := 0; b < B; b++ {
		addInPlace(x[(b*T+T-1)*C:][:C], proj[b*C:][:C])
	}
}

func addInPlace(x, y []float32) {
	y = y[:len(x)]
	for i := range x {
		x[i] += y[i]
	}
}

// Model is GPT2LMHeadModel. LMHead aliases WTE when the checkpoint ties them (always for
// GPT-2); logits are computed as h·LMHeadᵀ without a transposed copy. With quantized weights
// (Config().Weights set) WTE and LMHead are nil and WTEQ, LMHeadQ hold them, scaled per row
// (vocabulary entry). A Model is read-only after Load: sessions on separate Caches may call
// Forward concurrently.
type Model struct {
	cfg     Config
	WTE     []float32 // (V,C) token embeddings
	WTEQ    QWeights
	WPE     []float32 // (NPositions,C) position embeddings
	Blocks  []Block
	LNF     LayerNorm
	LMHead  []float32 // (V,C)
	LMHeadQ QWeights
	mem     *weightMem  // the weight matrices' memory (weightmem.go), nil on the Go heap
	kv      quant.DType // the KV cache type SetKVCache chose, "" for the default (kvcache.go)

	spareMu sync.Mutex
	spare   step     // working buffers a released cache left for the next NewCache (stepKeepBytes)
	kvSpare *kvSpare // the KV mappings a released cache left for the next NewCache (kvmem.go)
}

// putSpare keeps s for the next NewCache when it is at most stepKeepBytes and no spare is kept.
func (m *Model) putSpare(s step) {
	if s.x == nil || s.bytes() > stepKeepBytes || !keepSteps {
		return
	}
	m.spareMu.Lock()
	defer m.spareMu.Unlock()
	if m.spare.x == nil {
		s.cache, s.mask, s.pending = nil, nil, nil
		m.spare = s
	}
}

// takeSpare returns the spare working buffers, if any, and forgets them.
func (m *Model) takeSpare() step {
	m.spareMu.Lock()
	defer m.spareMu.Unlock()
	s := m.spare
	m.spare = step{}
	return s
}

// Config returns the model's configuration.
func (m *Model) Config() Config { return m.cfg }

// binder resolves Hugging Face tensor names in a safetensors file, checking each shape against
// the one the config implies, and records the first error.
type binder struct {
	f      *safetensors.File
	prefix string      // "transformer." or ""
	dt     quant.DType // how the weight matrices are stored (config.json "quantization")
	err    error
	// A Conv1D weight is read row-major into these buffers, reused from layer to layer, and
	// packed into its panels from there: the packed copy is the only one that stays.
	scratchF32 []float32
	scratchI8  []int8
	scratchF16 []uint16
	// mem, when set, receives the float32 matrices (token embeddings, LM head, packed Conv1D
	// weights) instead of the Go heap (weightmem.go).
	mem *kernels.HugeMem
}

func (b *binder) get(name string, shape ...int) []float32 { return b.getInto(nil, name, shape...) }

// getInto is get decoding into *buf (grown as needed) when buf is not nil. Either way the
// tensor's pages of the file mapping are released once it is copied out.
func (b *binder) getInto(buf *[]float32, name string, shape ...int) []float32 {
	if b.err != nil {
		return nil
	}
	full := b.prefix + name
	ti, err := b.f.Info(full)
	if err != nil {
		b.err = fmt.Errorf("gpt2: %s: missing tensor %q (want shape %s): %w", b.f.Path(), full, fmtShape(shape), err)
		return nil
	}
	if !equalShape(ti.Shape, shape) {
		b.err = fmt.Errorf("gpt2: %s: tensor %q has shape %s, want %s from config.json", b.f.Path(), full, fmtShape(ti.Shape), fmtShape(shape))
		return nil
	}
	switch ti.DType {
	case safetensors.F32, safetensors.F16, safetensors.BF16:
	default:
		b.err = fmt.Errorf("gpt2: %s: tensor %q has dtype %s, want F32, F16 or BF16", b.f.Path(), full, ti.DType)
		return nil
	}
	defer b.release(full)
	if buf == nil {
		data, _, err := b.f.Float32(full)
		if err != nil {
			b.err = fmt.Errorf("gpt2: %w", err)
		}
		return data
	}
	*buf = growBuf(*buf, ti.NumElements())
	raw, _, _ := b.f.Raw(full)
	if err := safetensors.DecodeFloat32(*buf, raw, ti.DType); err != nil {
		b.err = fmt.Errorf("gpt2: %s: tensor %q: %w", b.f.Path(), full, err)
	}
	return *buf
}

// release drops tensor full's pages of the file mapping from memory (see safetensors.Release).
func (b *binder) release(full string) {
	if err := b.f.Release(full); err != nil {
		slog.Debug("gpt2: load", "err", err)
	}
}

// growBuf returns s with length n, reallocated only when its capacity is short.
func growBuf[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

func (b *binder) linear(name string, in, out int) Linear {
	w, q := b.matrix(name+".weight", in, out, true)
	if w != nil { // float32, in the scratch buffer: pack it
		q, w = QWeights{DType: quant.F32, F32: kernels.PackPanelsInto(keep[float32](b, kernels.PanelLen(in, out)), w, in, out), Panels: true}, nil
	}
	return Linear{Weight: w, Q: packKept(b, q, in, out), Bias: b.get(name+".bias", out), In: in, Out: out}
}

func (b *binder) layerNorm(name string, c int, eps float64) LayerNorm {
	return LayerNorm{Weight: b.get(name+".weight", c), Bias: b.get(name+".bias", c), Eps: float32(eps)}
}

func equalShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func fmtShape(s []int) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return "(" + strings.Join(parts, ",") + ")"
}

// Load reads dir/config.json and dir/model.safetensors. Tensor names may carry the
// "transformer." prefix (transformers' save_pretrained) or not (the hub's original gpt2
// checkpoint); the attn.bias / attn.masked_bias mask buffers are ignored; lm_head.weight, when
// absent, is tied to wte. A missing tensor or a shape that disagrees with config.json is an error
// naming the file and the tensor. A directory written by WriteQuantized (config.json has a
// "quantization" entry) loads its int8 or fp16 weights as stored.
func Load(dir string) (*Model, error) { return LoadWith(dir, LoadOptions{}) }

// LoadWith is Load with options; opts.Weights quantizes a float32 checkpoint as it loads.
func LoadWith(dir string, opts LoadOptions) (*Model, error) {
	start := time.Now()
	cfg, err := LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "model.safetensors")
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gpt2: load %s: %w", dir, err)
	}
	defer f.Close()
	b := &binder{f: f, dt: cfg.Weights}
	if f.Has("transformer.wte.weight") {
		b.prefix = "transformer."
	}
	c, v, inner := cfg.NEmbd, cfg.VocabSize, cfg.Inner()
	b.mem = newWeightMem(cfg, f.Has("lm_head.weight"), cfg.Weights)
	m := &Model{cfg: cfg}
	m.kvSpare = newKVSpare(m)
	m.WTE, m.WTEQ = b.matrix("wte.weight", v, c, false)
	m.WPE = b.get("wpe.weight", cfg.NPositions, c)
	for i := 0; i < cfg.NLayer && b.err == nil; i++ {
		p := fmt.Sprintf("h.%d.", i)
		m.Blocks = append(m.Blocks, Block{
			LN1: b.layerNorm(p+"ln_1", c, cfg.LayerNormEpsilon),
			Attn: Attention{
				CAttn: b.linear(p+"attn.c_attn", c, 3*c), CProj: b.linear(p+"attn.c_proj", c, c),
				NHead: cfg.NHead, HeadDim: cfg.HeadDim(),
			},
			LN2: b.layerNorm(p+"ln_2", c, cfg.LayerNormEpsilon),
			MLP: MLP{CFC: b.linear(p+"mlp.c_fc", c, inner), CProj: b.linear(p+"mlp.c_proj", inner, c)},
		})
	}
	m.LNF = b.layerNorm("ln_f", c, cfg.LayerNormEpsilon)
	m.LMHead, m.LMHeadQ = m.WTE, m.WTEQ
	if f.Has("lm_head.weight") {
		hb := &binder{f: f, dt: cfg.Weights, mem: b.mem}
		m.LMHead, m.LMHeadQ = hb.matrix("lm_head.weight", v, c, false)
		if hb.err != nil && b.err == nil {
			b.err = hb.err
		}
	}
	m.setMem(b.mem)
	if b.err != nil {
		m.mem.free()
		return nil, b.err
	}
	if f.Has(b.prefix + fmt.Sprintf("h.%d.ln_1.weight", cfg.NLayer)) {
		m.mem.free()
		return nil, fmt.Errorf("gpt2: %s: tensor %q exists but config.json says n_layer=%d", path, b.prefix+fmt.Sprintf("h.%d.ln_1.weight", cfg.NLayer), cfg.NLayer)
	}
	if err := m.SetKVCache(opts.KVCache); err != nil {
		m.mem.free()
		return nil, fmt.Errorf("gpt2: load %s: %w", dir, err)
	}
	if opts.Weights != "" {
		if err := m.Quantize(opts.Weights); err != nil {
			return nil, fmt.Errorf("gpt2: load %s: %w", dir, err)
		}
	}
	m.packLinears()
	slog.Debug("gpt2: loaded", "dir", dir, "weights", orF32(m.cfg.Weights), "kv_cache", m.KVCache(), "bytes", m.WeightBytes(), "vocab", cfg.VocabSize, "n_embd", cfg.NEmbd, "n_layer", cfg.NLayer,
		"n_head", cfg.NHead, "elapsed", time.Since(start))
	return m, nil
}

// NewRandom builds a model of shape cfg with weights drawn from a fixed seed (uniform with
// standard deviation 0.02, LayerNorm gains 1), for benchmarks; nothing is read from disk. It
// panics on an invalid cfg.
func NewRandom(cfg Config, seed uint64) *Model {
	if err := cfg.Validate(); err != nil {
		panic("gpt2: NewRandom: " + err.Error())
	}
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	const std = 0.02
	a := float32(std * math.Sqrt(3))
	fill := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = a * (2*r.Float32() - 1)
		}
		return v
	}
	ln := func(c int) LayerNorm {
		g := make([]float32, c)
		for i := range g {
			g[i] = 1
		}
		return LayerNorm{Weight: g, Bias: make([]float32, c), Eps: float32(cfg.LayerNormEpsilon)}
	}
	lin := func(in, out int) Linear { return Linear{Weight: fill(in * out), Bias: fill(out), In: in, Out: out} }
	c, inner := cfg.NEmbd, cfg.Inner()
	m := &Model{cfg: cfg, WTE: fill(cfg.VocabSize * c), WPE: fill(cfg.NPositions * c), LNF: ln(c)}
	m.kvSpare = newKVSpare(m)
	for range cfg.NLayer {
		m.Blocks = append(m.Blocks, Block{
			LN1:  ln(c),
			Attn: Attention{CAttn: lin(c, 3*c), CProj: lin(c, c), NHead: cfg.NHead, HeadDim: cfg.HeadDim()},
			LN2:  ln(c),
			MLP:  MLP{CFC: lin(c, inner), CProj: lin(inner, c)},
		})
	}
	m.LMHead = m.WTE
	m.packLinears()
	m.moveToHugeMem()
	return m
}
