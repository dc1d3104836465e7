package export

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/modelrt/modelrt/onnx/graph"
	"github.com/modelrt/modelrt/onnx/onnxpb"
	"github.com/modelrt/modelrt/sdk/modeldir"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

// Optimum's VAE split: the directories and tensor names ExportVAE writes and the onnxrt backend
// reads (docs/vae.md).
const (
	VAEEncoderDir = "vae_encoder"
	VAEDecoderDir = "vae_decoder"
	// vae_encoder: sample (B,C,H,W) → latent_parameters (B,2L,H/f,W/f) = mean‖logvar, unclamped.
	VAEEncoderInput  = "sample"
	VAEEncoderOutput = "latent_parameters"
	// vae_decoder: latent_sample (B,L,h,w) → sample (B,C,h·f,w·f).
	VAEDecoderInput  = "latent_sample"
	VAEDecoderOutput = "sample"
)

// vaeGroupNormEps is diffusers' resnet_eps for AutoencoderKL (native/vae uses the same).
const vaeGroupNormEps = 1e-6

// IsVAEDir reports whether dir holds a diffusers AutoencoderKL: a config.json whose _class_name is
// AutoencoderKL, or, without a class name, one with block_out_channels and latent_channels.
// `modelrt export` uses it to choose between ExportVAE and ExportGPT2.
func IsVAEDir(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return false
	}
	var c struct {
		Class          string `json:"_class_name"`
		Blocks         []int  `json:"block_out_channels"`
		LatentChannels *int   `json:"latent_channels"`
	}
	if json.Unmarshal(data, &c) != nil {
		return false
	}
	if c.Class != "" {
		return c.Class == "AutoencoderKL"
	}
	return len(c.Blocks) > 0 && c.LatentChannels != nil
}

// ExportVAE reads a diffusers AutoencoderKL directory (config.json and the first of
// modeldir.VAEWeightFiles) and writes Optimum's split with the same weights:
//
//	outDir/vae_encoder/model.onnx   sample → latent_parameters (encoder + quant_conv)
//	outDir/vae_decoder/model.onnx   latent_sample → sample (post_quant_conv + decoder)
//
// with a copy of config.json in each part. opts.Opset is 14 (default) or 17; WithPast is
// ignored. The math is native/vae's: docs/vae.md lists the op choices.
func ExportVAE(srcDir, outDir string, opts Options) error {
	start := time.Now()
	cfg, err := modeldir.ReadVAEConfig(filepath.Join(srcDir, "config.json"))
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	var wpath string
	for _, name := range modeldir.VAEWeightFiles {
		if p := filepath.Join(srcDir, name); fileExists(p) {
			wpath = p
			break
		}
	}
	if wpath == "" {
		return fmt.Errorf("export: %s holds none of %v", srcDir, modeldir.VAEWeightFiles)
	}
	st, err := safetensors.Open(wpath)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer st.Close()
	slog.Info("export: building VAE graphs", "src", srcDir, "block_out_channels", cfg.BlockOutChannels,
		"layers_per_block", cfg.LayersPerBlock, "latent_channels", cfg.LatentChannels, "opset", opts.opset())
	enc, dec, err := BuildVAE(cfg, &fileWeights{inner: &safetensorsWeights{f: st}, path: wpath}, opts)
	if err != nil {
		return err
	}
	for _, part := range []struct {
		dir string
		m   *onnxpb.ModelProto
	}{{VAEEncoderDir, enc}, {VAEDecoderDir, dec}} {
		dir := filepath.Join(outDir, part.dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		out := filepath.Join(dir, ModelFile)
		if err := os.Remove(filepath.Join(dir, graph.ExternalDataName(out))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("export: %w", err)
		}
		slog.Info("export: writing", "path", out, "nodes", len(part.m.Graph.Node), "initializers", len(part.m.Graph.Initializer))
		if err := graph.Save(part.m, out, graph.SaveOptions{External: opts.ExternalData}); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		if same, err := sameDir(srcDir, dir); err != nil || same {
			return err
		}
		if _, err := copyIfExists(filepath.Join(srcDir, "config.json"), filepath.Join(dir, "config.json")); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	slog.Info("export: done", "out", outDir, "elapsed", time.Since(start).Round(time.Millisecond))
	return nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// fileWeights names the weights file in errors.
type fileWeights struct {
	inner Weights
	path  string
}

func (w *fileWeights) Tensor(name string) ([]byte, []int64, error) {
	raw, shape, err := w.inner.Tensor(name)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", w.path, err)
	}
	return raw, shape, nil
}

// VAEShapes lists the diffusers AutoencoderKL tensors of a model with config cfg and their shapes
// (attention linears (C,C) under the current to_q/to_k/to_v/to_out.0 names).
func VAEShapes(cfg modeldir.VAEConfig) map[string][]int64 {
	s := map[string][]int64{}
	conv := func(name string, cin, cout, k int) {
		s[name+".weight"] = []int64{int64(cout), int64(cin), int64(k), int64(k)}
		s[name+".bias"] = []int64{int64(cout)}
	}
	vec := func(name string, c int) {
		s[name+".weight"] = []int64{int64(c)}
		s[name+".bias"] = []int64{int64(c)}
	}
	resnet := func(p string, cin, cout int) {
		vec(p+".norm1", cin)
		conv(p+".conv1", cin, cout, 3)
		vec(p+".norm2", cout)
		conv(p+".conv2", cout, cout, 3)
		if cin != cout {
			conv(p+".conv_shortcut", cin, cout, 1)
		}
	}
	mid := func(p string, c int) {
		resnet(p+".resnets.0", c, c)
		if cfg.MidBlockAddAttention {
			a := p + ".attentions.0"
			vec(a+".group_norm", c)
			for _, n := range []string{".to_q", ".to_k", ".to_v", ".to_out.0"} {
				s[a+n+".weight"] = []int64{int64(c), int64(c)}
				s[a+n+".bias"] = []int64{int64(c)}
			}
		}
		resnet(p+".resnets.1", c, c)
	}
	ch, L := cfg.BlockOutChannels, cfg.LatentChannels
	last := ch[len(ch)-1]
	conv("encoder.conv_in", cfg.InChannels, ch[0], 3)
	prev := ch[0]
	for i, c := range ch {
		p := "encoder.down_blocks." + strconv.Itoa(i)
		for j := range cfg.LayersPerBlock {
			resnet(p+".resnets."+strconv.Itoa(j), prev, c)
			prev = c
		}
		if i < len(ch)-1 {
			conv(p+".downsamplers.0.conv", c, c, 3)
		}
	}
	mid("encoder.mid_block", last)
	vec("encoder.conv_norm_out", last)
	conv("encoder.conv_out", last, 2*L, 3)
	if cfg.UseQuantConv {
		conv("quant_conv", 2*L, 2*L, 1)
	}
	if cfg.UsePostQuantConv {
		conv("post_quant_conv", L, L, 1)
	}
	conv("decoder.conv_in", L, last, 3)
	mid("decoder.mid_block", last)
	prev = last
	for i := range ch {
		c := ch[len(ch)-1-i]
		p := "decoder.up_blocks." + strconv.Itoa(i)
		for j := range cfg.LayersPerBlock + 1 {
			resnet(p+".resnets."+strconv.Itoa(j), prev, c)
			prev = c
		}
		if i < len(ch)-1 {
			conv(p+".upsamplers.0.conv", c, c, 3)
		}
	}
	vec("decoder.conv_norm_out", ch[0])
	conv("decoder.conv_out", ch[0], cfg.OutChannels, 3)
	return s
}

// RandomVAEWeights returns Weights for an AutoencoderKL of config cfg without a checkpoint, for
// benchmarks: conv and linear weights N(0,1)/sqrt(fan_in), biases 0, GroupNorm γ = 1, β = 0 (the
// init of native/vae.NewRandom). Each tensor depends only on seed and its name.
// WriteRandomVAE stores them as a model directory that native/vae can load too.
func RandomVAEWeights(cfg modeldir.VAEConfig, seed uint64) Weights {
	return randomVAEWeights{shapes: VAEShapes(cfg), seed: seed}
}

type randomVAEWeights struct {
	shapes map[string][]int64
	seed   uint64
}

func (w randomVAEWeights) Tensor(name string) ([]byte, []int64, error) {
	shape, ok := w.shapes[name]
	if !ok {
		return nil, nil, fmt.Errorf("random weights: %q: %w", name, safetensors.ErrNotFound)
	}
	v := randomVAETensor(name, shape, w.seed)
	return graph.Float32Bytes(v), shape, nil
}

func randomVAETensor(name string, shape []int64, seed uint64) []float32 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	switch {
	case len(shape) == 1 && isNormName(name) && filepath.Ext(name) == ".weight":
		for i := range v {
			v[i] = 1
		}
	case len(shape) == 1: // biases and GroupNorm β
	default:
		h := fnv.New64a()
		h.Write([]byte(name))
		r := rand.New(rand.NewPCG(seed, h.Sum64()))
		sd := 1 / math.Sqrt(float64(n/shape[0]))
		for i := range v {
			v[i] = float32(r.NormFloat64() * sd)
		}
	}
	return v
}

// isNormName reports whether a ".weight"/".bias" tensor belongs to a GroupNorm.
func isNormName(name string) bool {
	base := strings.TrimSuffix(strings.TrimSuffix(name, ".weight"), ".bias")
	for _, suffix := range []string{".norm1", ".norm2", ".group_norm", ".conv_norm_out"} {
		if strings.HasSuffix(base, suffix) {
			return true
		}
	}
	return false
}

// WriteRandomVAE writes dir/config.json (cfg) and dir/diffusion_pytorch_model.safetensors with
// RandomVAEWeights(cfg, seed), so that native/vae.Load and ExportVAE see the same model.
func WriteRandomVAE(dir string, cfg modeldir.VAEConfig, seed uint64) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	conf := map[string]any{
		"_class_name": "AutoencoderKL", "in_channels": cfg.InChannels, "out_channels": cfg.OutChannels,
		"latent_channels": cfg.LatentChannels, "block_out_channels": cfg.BlockOutChannels,
		"layers_per_block": cfg.LayersPerBlock, "norm_num_groups": cfg.NormNumGroups,
		"sample_size": cfg.SampleSize, "scaling_factor": cfg.ScalingFactor, "act_fn": "silu",
		"use_quant_conv": cfg.UseQuantConv, "use_post_quant_conv": cfg.UsePostQuantConv,
		"mid_block_add_attention": cfg.MidBlockAddAttention,
	}
	data, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	var ts []safetensors.Tensor
	for name, shape := range VAEShapes(cfg) {
		s := make([]int, len(shape))
		for i, d := range shape {
			s[i] = int(d)
		}
		ts = append(ts, safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: s, F32: randomVAETensor(name, shape, seed)})
	}
	if err := safetensors.WriteFile(filepath.Join(dir, modeldir.VAEWeightFiles[0]), ts, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

// vaeGraph holds the state of one VAE graph build.
type vaeGraph struct {
	b      *graph.Builder
	cfg    modeldir.VAEConfig
	w      Weights
	err    error // first error; later calls do nothing, so the build reads as the model
	consts map[float32]string
	// lazily built shared constants
	groupShape, ones, zeros string
	padDown, upScales       string
	shapes                  map[string]string // 1-D int64 constants by content
}

// ints returns a 1-D int64 initializer holding vals, shared by every node that needs it.
func (g *vaeGraph) ints(name string, vals ...int64) string {
	key := fmt.Sprint(vals)
	if n, ok := g.shapes[key]; ok {
		return n
	}
	n := g.b.Ints(name, vals...)
	g.shapes[key] = n
	return n
}

// BuildVAE builds Optimum's two VAE graphs for cfg with weights w (diffusers names; the legacy
// attention names query/key/value/proj_attn and (C,C,1,1) linears are accepted as native/vae
// accepts them).
func BuildVAE(cfg modeldir.VAEConfig, w Weights, opts Options) (enc, dec *onnxpb.ModelProto, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, fmt.Errorf("export: %w", err)
	}
	op := opts.opset()
	if op != 14 && op != 17 {
		return nil, nil, fmt.Errorf("%w: opset %d (want 14 or 17)", ErrUnsupported, op)
	}
	mo := graph.ModelOptions{Opset: int64(op), ProducerName: Producer}
	ch, L := cfg.BlockOutChannels, int64(cfg.LatentChannels)
	f := cfg.DownsampleFactor()
	const batch, height, width = "batch_size", "height", "width"
	lh, lw := fmt.Sprintf("height/%d", f), fmt.Sprintf("width/%d", f)

	// Encoder: sample → encoder → quant_conv → latent_parameters.
	g := &vaeGraph{b: graph.New("vae_encoder"), cfg: cfg, w: w, consts: map[float32]string{}, shapes: map[string]string{}}
	b := g.b
	x := b.Input(VAEEncoderInput, graph.Float, batch, cfg.InChannels, height, width)
	b.Output(VAEEncoderOutput, graph.Float, batch, 2*L, lh, lw)
	b.Prefix = "/encoder/conv_in/"
	x = g.conv("encoder.conv_in", x, cfg.InChannels, ch[0], 3, 1)
	prev := ch[0]
	for i, c := range ch {
		p := "encoder.down_blocks." + strconv.Itoa(i)
		for j := range cfg.LayersPerBlock {
			x = g.resnet(p+".resnets."+strconv.Itoa(j), x, prev, c)
			prev = c
		}
		if i < len(ch)-1 {
			b.Prefix = "/" + p + ".downsamplers.0/"
			// Downsample2D: F.pad (0,1,0,1) — one zero column right, one row below — then a
			// stride-2 3×3 conv without padding.
			if g.padDown == "" {
				g.padDown = g.ints("pads_downsample", 0, 0, 0, 0, 0, 0, 1, 1)
			}
			x = g.conv(p+".downsamplers.0.conv", b.Node("Pad", []string{x, g.padDown}, graph.String("mode", "constant")), c, c, 3, 2)
		}
	}
	x = g.mid("encoder.mid_block", x, prev)
	b.Prefix = "/encoder/conv_out/"
	x = g.conv("encoder.conv_out", g.norm("encoder.conv_norm_out", x, prev, true), prev, int(2*L), 3, 1)
	if cfg.UseQuantConv {
		b.Prefix = "/quant_conv/"
		x = g.conv("quant_conv", x, int(2*L), int(2*L), 1, 1)
	}
	b.NodeTo("Identity", []string{x}, []string{VAEEncoderOutput})
	if g.err != nil {
		return nil, nil, g.err
	}
	mo.DocString = "AutoencoderKL encoder exported by modelrt (onnx/export); Optimum's vae_encoder; see docs/vae.md"
	enc = b.Model(mo)

	// Decoder: latent_sample → post_quant_conv → decoder → sample.
	g = &vaeGraph{b: graph.New("vae_decoder"), cfg: cfg, w: w, consts: map[float32]string{}, shapes: map[string]string{}}
	b = g.b
	x = b.Input(VAEDecoderInput, graph.Float, batch, L, lh, lw)
	b.Output(VAEDecoderOutput, graph.Float, batch, cfg.OutChannels, height, width)
	if cfg.UsePostQuantConv {
		b.Prefix = "/post_quant_conv/"
		x = g.conv("post_quant_conv", x, int(L), int(L), 1, 1)
	}
	last := ch[len(ch)-1]
	b.Prefix = "/decoder/conv_in/"
	x = g.conv("decoder.conv_in", x, int(L), last, 3, 1)
	x = g.mid("decoder.mid_block", x, last)
	prev = last
	for i := range ch {
		c := ch[len(ch)-1-i]
		p := "decoder.up_blocks." + strconv.Itoa(i)
		for j := range cfg.LayersPerBlock + 1 {
			x = g.resnet(p+".resnets."+strconv.Itoa(j), x, prev, c)
			prev = c
		}
		if i < len(ch)-1 {
			b.Prefix = "/" + p + ".upsamplers.0/"
			x = g.conv(p+".upsamplers.0.conv", g.upsample(x), c, c, 3, 1)
		}
	}
	b.Prefix = "/decoder/conv_out/"
	x = g.conv("decoder.conv_out", g.norm("decoder.conv_norm_out", x, ch[0], true), ch[0], cfg.OutChannels, 3, 1)
	b.NodeTo("Identity", []string{x}, []string{VAEDecoderOutput})
	if g.err != nil {
		return nil, nil, g.err
	}
	mo.DocString = "AutoencoderKL decoder exported by modelrt (onnx/export); Optimum's vae_decoder; see docs/vae.md"
	return enc, b.Model(mo), nil
}

// weight adds tensor name (or the first of alts the weights have) as an initializer after
// checking that its shape is want (or, for a linear, its (C,C,1,1) form), and returns its name
// and data.
func (g *vaeGraph) weight(name string, want []int64, alts ...string) (string, []byte) {
	if g.err != nil {
		return "", nil
	}
	raw, shape, err := g.w.Tensor(name)
	for _, a := range alts {
		if !errors.Is(err, safetensors.ErrNotFound) {
			break
		}
		raw, shape, err = g.w.Tensor(a)
		name = a
	}
	if err != nil {
		g.err = fmt.Errorf("export: weight %s: %w", name, err)
		return "", nil
	}
	ok := slices.Equal(shape, want)
	if len(want) == 2 && !ok {
		ok = slices.Equal(shape, []int64{want[0], want[1], 1, 1})
	}
	if !ok {
		g.err = fmt.Errorf("export: weight %s has shape %v, config says %v", name, shape, want)
		return "", nil
	}
	return name, raw
}

func (g *vaeGraph) tensor(name string, want []int64) string {
	n, raw := g.weight(name, want)
	if g.err != nil {
		return ""
	}
	return g.b.Tensor(n, graph.Float, want, raw)
}

// conv applies name.weight (cout,cin,k,k) and name.bias with stride; 3×3 convs pad 1 on every
// side unless stride is 2 (the caller has padded). x: (B,cin,H,W) → (B,cout,H',W').
func (g *vaeGraph) conv(name, x string, cin, cout, k, stride int) string {
	w := g.tensor(name+".weight", []int64{int64(cout), int64(cin), int64(k), int64(k)})
	bias := g.tensor(name+".bias", []int64{int64(cout)})
	if g.err != nil {
		return ""
	}
	pad := int64(0)
	if k == 3 && stride == 1 {
		pad = 1
	}
	return g.b.Node("Conv", []string{x, w, bias},
		graph.IntList("kernel_shape", int64(k), int64(k)),
		graph.IntList("strides", int64(stride), int64(stride)),
		graph.IntList("pads", pad, pad, pad, pad))
}

// norm applies GroupNorm(groups, eps 1e-6) with γ = name.weight, β = name.bias, then SiLU when
// silu is set. x: (B,C,H,W).
//
// It is decomposed as torch.onnx.export does it — Reshape to (B,G,C/G·H·W),
// InstanceNormalization with unit scale, Reshape back, then the per-channel affine — rather than
// opset 18's GroupNormalization, whose scale and bias changed from per-group to per-channel in
// opset 21 (so a graph's meaning would hang on its opset) and which opsets 14 and 17 lack.
func (g *vaeGraph) norm(name, x string, c int, silu bool) string {
	gamma := g.tensor(name+".weight", []int64{int64(c)})
	beta := g.tensor(name+".bias", []int64{int64(c)})
	if g.err != nil {
		return ""
	}
	b := g.b
	G := int64(g.cfg.NormNumGroups)
	if g.groupShape == "" {
		g.groupShape = g.ints("shape_groups", 0, G, -1) // 0 copies the batch dim
		ones := make([]float32, G)
		for i := range ones {
			ones[i] = 1
		}
		g.ones = b.Float32("groupnorm_scale", []int64{G}, ones)
		g.zeros = b.Float32("groupnorm_bias", []int64{G}, make([]float32, G))
	}
	h := b.Node("Reshape", []string{x, g.groupShape})
	h = b.Node("InstanceNormalization", []string{h, g.ones, g.zeros}, graph.FloatAttr("epsilon", vaeGroupNormEps))
	h = b.Node("Reshape", []string{h, b.Node("Shape", []string{x})})
	cshape := g.ints("shape_c11", int64(c), 1, 1)
	h = b.Node("Add", []string{
		b.Node("Mul", []string{h, b.Node("Reshape", []string{gamma, cshape})}),
		b.Node("Reshape", []string{beta, cshape}),
	})
	if silu {
		h = b.Node("Mul", []string{h, b.Node("Sigmoid", []string{h})})
	}
	return h
}

// resnet is ResnetBlock2D without a time embedding:
// shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x)))))).
func (g *vaeGraph) resnet(p, x string, cin, cout int) string {
	g.b.Prefix = "/" + p + "/"
	h := g.conv(p+".conv1", g.norm(p+".norm1", x, cin, true), cin, cout, 3, 1)
	h = g.conv(p+".conv2", g.norm(p+".norm2", h, cout, true), cout, cout, 3, 1)
	if cin != cout {
		x = g.conv(p+".conv_shortcut", x, cin, cout, 1, 1)
	}
	if g.err != nil {
		return ""
	}
	return g.b.Node("Add", []string{x, h})
}

// linear adds a c→c Linear as a MatMul by Wᵀ (transposed here, once) plus the bias.
// t: (B,N,C) → (B,N,C).
func (g *vaeGraph) linear(t string, c int, names ...string) string {
	name, raw := g.weight(names[0]+".weight", []int64{int64(c), int64(c)}, dotWeight(names[1:])...)
	if g.err != nil {
		return ""
	}
	wt := make([]byte, len(raw))
	for o := range c {
		for i := range c {
			copy(wt[4*(i*c+o):4*(i*c+o)+4], raw[4*(o*c+i):4*(o*c+i)+4])
		}
	}
	w := g.b.Tensor(name+"_transposed", graph.Float, []int64{int64(c), int64(c)}, wt)
	biasName := name[:len(name)-len(".weight")] + ".bias"
	bias := g.tensor(biasName, []int64{int64(c)})
	if g.err != nil {
		return ""
	}
	return g.b.Node("Add", []string{g.b.Node("MatMul", []string{t, w}), bias})
}

func dotWeight(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = n + ".weight"
	}
	return out
}

// attention is the mid block's single-head self-attention over the H·W positions:
// x + to_out(softmax(q·kᵀ/√C)·v), q, k, v = to_q, to_k, to_v of group_norm(x). x: (B,C,H,W).
func (g *vaeGraph) attention(p, x string, c int) string {
	b := g.b
	b.Prefix = "/" + p + "/"
	n := g.norm(p+".group_norm", x, c, false)
	if g.err != nil {
		return ""
	}
	t := b.Node("Transpose", []string{b.Node("Reshape", []string{n, g.ints("shape_bc_hw", 0, int64(c), -1)})}, graph.IntList("perm", 0, 2, 1)) // (B,HW,C)
	q := g.linear(t, c, p+".to_q", p+".query")
	k := g.linear(t, c, p+".to_k", p+".key")
	v := g.linear(t, c, p+".to_v", p+".value")
	if g.err != nil {
		return ""
	}
	scores := b.Node("MatMul", []string{q, b.Node("Transpose", []string{k}, graph.IntList("perm", 0, 2, 1))}) // (B,HW,HW)
	scores = b.Node("Mul", []string{scores, g.scalar(float32(1 / math.Sqrt(float64(c))))})
	o := b.Node("MatMul", []string{b.Node("Softmax", []string{scores}, graph.Int("axis", -1)), v}) // (B,HW,C)
	o = g.linear(o, c, p+".to_out.0", p+".proj_attn")
	if g.err != nil {
		return ""
	}
	o = b.Node("Reshape", []string{b.Node("Transpose", []string{o}, graph.IntList("perm", 0, 2, 1)), b.Node("Shape", []string{x})})
	return b.Node("Add", []string{x, o})
}

// mid is UNetMidBlock2D: resnet, attention (when configured), resnet.
func (g *vaeGraph) mid(p, x string, c int) string {
	x = g.resnet(p+".resnets.0", x, c, c)
	if g.cfg.MidBlockAddAttention {
		x = g.attention(p+".attentions.0", x, c)
	}
	return g.resnet(p+".resnets.1", x, c, c)
}

// upsample is nearest 2× upsampling: out[y][x] = in[y/2][x/2] (Resize with asymmetric
// coordinates and floor, which is exactly that index map). x: (B,C,H,W) → (B,C,2H,2W).
func (g *vaeGraph) upsample(x string) string {
	if g.upScales == "" {
		g.upScales = g.b.Float32("scales_upsample", []int64{4}, []float32{1, 1, 2, 2})
	}
	return g.b.Node("Resize", []string{x, "", g.upScales},
		graph.String("mode", "nearest"),
		graph.String("coordinate_transformation_mode", "asymmetric"),
		graph.String("nearest_mode", "floor"))
}

// scalar returns the name of a float32 scalar initializer holding v, adding it on first use.
func (g *vaeGraph) scalar(v float32) string {
	if n, ok := g.consts[v]; ok {
		return n
	}
	n := g.b.Float32("const_"+strconv.FormatUint(uint64(math.Float32bits(v)), 16), nil, []float32{v})
	g.consts[v] = n
	return n
}
