package vae

import (
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/modelrt/modelrt/native/kernels"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

// weightSource is what the builder needs from a weights file; *safetensors.File provides it.
type weightSource interface {
	Has(name string) bool
	Float32(name string) ([]float32, []int, error)
}

// Load reads a diffusers AutoencoderKL directory: config.json and the first of WeightFiles that
// exists. Every tensor's shape is checked against the config; errors name the file and tensor.
func Load(dir string) (*Model, error) {
	cfg, err := ReadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	var path string
	for _, name := range WeightFiles {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		return nil, fmt.Errorf("%w: %s holds none of %v", ErrMissingWeights, dir, WeightFiles)
	}
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, fmt.Errorf("vae: %w", err)
	}
	defer f.Close()
	b := &builder{src: f, path: path, used: map[string]bool{}}
	m := build(cfg, b)
	if b.err != nil {
		return nil, b.err
	}
	var unused []string
	for _, n := range f.Names() {
		if !b.used[n] {
			unused = append(unused, n)
		}
	}
	if len(unused) > 0 {
		slog.Warn("vae: weights file has tensors the model does not use", "file", path, "count", len(unused),
			"first", unused[:min(5, len(unused))])
	}
	slog.Debug("vae: loaded", "dir", dir, "file", path, "params", b.params)
	return m, nil
}

// NewRandom builds a model of config cfg with random weights from seed (convolution and linear
// weights N(0,1)/sqrt(fan_in), biases 0, GroupNorm γ=1, β=0) — for benchmarks of a shape no
// file exists for.
func NewRandom(cfg Config, seed uint64) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &builder{rng: rand.New(rand.NewPCG(seed, 0x7661650a))}
	return build(cfg, b), nil
}

// builder binds weights to layers, from a file (src) or random (rng). The first error sticks
// and later calls return zero layers, so build reads as a plain description of the model.
type builder struct {
	src    weightSource
	path   string
	rng    *rand.Rand
	used   map[string]bool
	err    error
	params int
	keptU  int // bytes of Winograd transforms the model's convs keep (up to keptUMax)
}

// keptUMax bounds the Winograd weight transforms a model keeps across calls (bytes). A kept
// F(4×4,3×3) transform is 4× its weight (36 values per 3×3 kernel), and keeping all of them
// took the SD-shaped VAE plugin from ~280 to 700–820 MiB peak RSS, above ONNX Runtime's ~600;
// with 160 MiB kept it peaked at 571–618 MiB against ONNX Runtime's 626 (AMD EPYC, 2 cores).
// What is not kept is recomputed per call (winogradWeightsGemm: about 50 CPU-ms per 256² encode
// for all layers). The time saved per byte kept is the same for every layer (both scale with
// cin·cout), so the first convs built keep theirs until the budget is spent.
const keptUMax = 64 << 20

type initKind int

const (
	initFanIn initKind = iota // N(0,1)/sqrt(fan_in)
	initZero
	initOne
)

// tensor returns the weight name with one of the accepted shapes (the first is the one random
// weights get).
func (b *builder) tensor(name string, init initKind, shapes ...[]int) []float32 {
	if b.err != nil {
		return nil
	}
	want := shapes[0]
	n := 1
	for _, d := range want {
		n *= d
	}
	b.params += n
	if b.src == nil {
		v := make([]float32, n)
		switch init {
		case initOne:
			for i := range v {
				v[i] = 1
			}
		case initFanIn:
			sd := 1 / math.Sqrt(float64(n/want[0]))
			for i := range v {
				v[i] = float32(b.rng.NormFloat64() * sd)
			}
		}
		return v
	}
	if !b.src.Has(name) {
		b.err = fmt.Errorf("%w: %s: no tensor %q", ErrMissingWeights, b.path, name)
		return nil
	}
	b.used[name] = true
	v, shape, err := b.src.Float32(name)
	if err != nil {
		b.err = fmt.Errorf("vae: %w", err)
		return nil
	}
	if !slices.ContainsFunc(shapes, func(s []int) bool { return slices.Equal(s, shape) }) {
		b.err = fmt.Errorf("%w: %s: tensor %q has shape %v, config wants %v", ErrInvalidWeights, b.path, name, shape, want)
		return nil
	}
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			b.err = fmt.Errorf("%w: %s: tensor %q holds %v at index %d", ErrInvalidWeights, b.path, name, x, i)
			return nil
		}
	}
	return v
}

// pick returns the first of names the file holds (diffusers renamed the attention weights;
// checkpoints of both eras exist), or the first name when none is present or weights are random.
func (b *builder) pick(names ...string) string {
	if b.src != nil {
		for _, n := range names {
			if b.src.Has(n + ".weight") {
				return n
			}
		}
	}
	return names[0]
}

// conv binds name.weight (cout,cin,k,k) and name.bias (cout).
// A k×k weight (k > 1) is wrapped for Conv2DWeights, which keeps its transforms across calls.
func (b *builder) conv(name string, cin, cout, k, stride int, pad [4]int) conv2d {
	c := conv2d{
		weight: b.tensor(name+".weight", initFanIn, []int{cout, cin, k, k}),
		bias:   b.tensor(name+".bias", initZero, []int{cout}),
		cin:    cin, cout: cout, k: k, stride: stride, pad: pad,
	}
	if c.weight != nil && k > 1 {
		c.prep = kernels.NewConvWeights(c.weight, cout, cin, k, k)
		if k == 3 && stride == 1 {
			if u := 4 * 4 * len(c.weight); b.keptU+u <= keptUMax {
				b.keptU += u
			} else {
				c.prep.RecomputeWinograd()
			}
		}
	}
	return c
}

// same3x3 is a 3×3 stride-1 conv padded to keep H and W.
func (b *builder) same3x3(name string, cin, cout int) conv2d {
	return b.conv(name, cin, cout, 3, 1, [4]int{1, 1, 1, 1})
}

// linear binds a c→c linear layer (weight (c,c), or (c,c,1,1) as older conversions store it)
// as a 1×1 conv.
func (b *builder) linear(name string, c int) conv2d {
	return conv2d{
		weight: b.tensor(name+".weight", initFanIn, []int{c, c}, []int{c, c, 1, 1}),
		bias:   b.tensor(name+".bias", initZero, []int{c}),
		cin:    c, cout: c, k: 1, stride: 1,
	}
}

func (b *builder) norm(name string, c, groups int) groupNorm {
	return groupNorm{
		gamma:  b.tensor(name+".weight", initOne, []int{c}),
		beta:   b.tensor(name+".bias", initZero, []int{c}),
		groups: groups,
	}
}

func (b *builder) resnet(p string, cin, cout, groups int) resnetBlock {
	r := resnetBlock{
		norm1: b.norm(p+".norm1", cin, groups),
		conv1: b.same3x3(p+".conv1", cin, cout),
		norm2: b.norm(p+".norm2", cout, groups),
		conv2: b.same3x3(p+".conv2", cout, cout),
	}
	if cin != cout {
		sc := b.conv(p+".conv_shortcut", cin, cout, 1, 1, [4]int{})
		r.shortcut = &sc
	}
	return r
}

func (b *builder) mid(p string, c, groups int, withAttention bool) midBlock {
	m := midBlock{res0: b.resnet(p+".resnets.0", c, c, groups)}
	if withAttention {
		a := p + ".attentions.0"
		m.attn = &attention{
			norm: b.norm(a+".group_norm", c, groups),
			q:    b.linear(b.pick(a+".to_q", a+".query"), c),
			k:    b.linear(b.pick(a+".to_k", a+".key"), c),
			v:    b.linear(b.pick(a+".to_v", a+".value"), c),
			proj: b.linear(b.pick(a+".to_out.0", a+".proj_attn"), c),
		}
	}
	m.res1 = b.resnet(p+".resnets.1", c, c, groups)
	return m
}

// build describes AutoencoderKL in diffusers' parameter names.
func build(cfg Config, b *builder) *Model {
	ch, g, lpb := cfg.BlockOutChannels, cfg.NormNumGroups, cfg.LayersPerBlock
	last := ch[len(ch)-1]
	m := &Model{cfg: cfg}

	e := &m.enc
	e.convIn = b.same3x3("encoder.conv_in", cfg.InChannels, ch[0])
	prev := ch[0]
	for i, c := range ch {
		p := "encoder.down_blocks." + strconv.Itoa(i)
		var d downBlock
		for j := range lpb {
			d.resnets = append(d.resnets, b.resnet(p+".resnets."+strconv.Itoa(j), prev, c, g))
			prev = c
		}
		if i < len(ch)-1 {
			// Downsample2D with padding=0: F.pad (0,1,0,1), then a stride-2 3×3 conv.
			ds := b.conv(p+".downsamplers.0.conv", c, c, 3, 2, [4]int{0, 1, 0, 1})
			d.down = &ds
		}
		e.down = append(e.down, d)
	}
	e.mid = b.mid("encoder.mid_block", last, g, cfg.MidBlockAddAttention)
	e.normOut = b.norm("encoder.conv_norm_out", last, g)
	e.convOut = b.same3x3("encoder.conv_out", last, 2*cfg.LatentChannels)

	if cfg.UseQuantConv {
		q := b.conv("quant_conv", 2*cfg.LatentChannels, 2*cfg.LatentChannels, 1, 1, [4]int{})
		m.quant = &q
	}
	if cfg.UsePostQuantConv {
		q := b.conv("post_quant_conv", cfg.LatentChannels, cfg.LatentChannels, 1, 1, [4]int{})
		m.postQuant = &q
	}

	d := &m.dec
	d.convIn = b.same3x3("decoder.conv_in", cfg.LatentChannels, last)
	d.mid = b.mid("decoder.mid_block", last, g, cfg.MidBlockAddAttention)
	prev = last
	for i := range ch {
		c := ch[len(ch)-1-i]
		p := "decoder.up_blocks." + strconv.Itoa(i)
		var u upBlock
		for j := range lpb + 1 {
			u.resnets = append(u.resnets, b.resnet(p+".resnets."+strconv.Itoa(j), prev, c, g))
			prev = c
		}
		if i < len(ch)-1 {
			up := b.same3x3(p+".upsamplers.0.conv", c, c)
			u.up = &up
		}
		d.up = append(d.up, u)
	}
	d.normOut = b.norm("decoder.conv_norm_out", ch[0], g)
	d.convOut = b.same3x3("decoder.conv_out", ch[0], cfg.OutChannels)
	return m
}
