package main

import (
	"context"
	"fmt"
	"image"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelrt/modelrt/runtime/imageio"
	"github.com/modelrt/modelrt/runtime/latent"
	"github.com/modelrt/modelrt/runtime/plugin"
	"github.com/modelrt/modelrt/runtime/vae"
	"github.com/modelrt/modelrt/sdk"
)

// vaeFlags are the flags of `modelrt vae` and its verbs.
type vaeFlags struct {
	model, backend, out string
	// image input
	size string // WxH to resize every image to
	fit  bool   // resize down to multiples of the downsampling factor
	// latent sampling
	mode  string // sample or mean
	seed  uint64
	scale bool
	// sample
	n, cols int
}

func newVAECmd(g *globals) *cobra.Command {
	f := &vaeFlags{}
	cmd := &cobra.Command{
		Use:   "vae",
		Short: "Encode images to latents and decode latents to images with a VAE through a backend plugin",
		Long: `Runs a diffusers AutoencoderKL in a backend plugin: a native directory (config.json +
diffusion_pytorch_model.safetensors) on the native backend, or Optimum's ONNX split
(vae_encoder/model.onnx, vae_decoder/model.onnx) on onnxrt. Images are PNG or JPEG in, PNG out;
latents are safetensors files (tensor "latent", plus "mean" and "logvar" from encode). Sampling
z = mean + exp(0.5·logvar)·ε happens here, on the host, from --seed, so every backend decodes the
same z. Image sizes must be multiples of the model's downsampling factor f, unless --size WxH or
--fit resizes them (Catmull-Rom). See docs/vae.md.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.model, "model", "", "VAE model directory")
	pf.StringVar(&f.backend, "backend", "native", "backend plugin: native, onnxrt, or a plugin path")
	pf.StringVarP(&f.out, "out", "o", "", "output file (.safetensors for encode, .png otherwise)")

	imageFlags := func(c *cobra.Command) {
		c.Flags().StringVar(&f.size, "size", "", "resize every image to WxH first (multiples of f)")
		c.Flags().BoolVar(&f.fit, "fit", false, "resize each image down to the nearest multiples of f")
	}
	samplingFlags := func(c *cobra.Command) {
		c.Flags().StringVar(&f.mode, "mode", "sample", "latent to use: sample (mean + σ·ε) or mean")
		c.Flags().Uint64Var(&f.seed, "seed", 0, "seed of ε")
	}
	encode := &cobra.Command{
		Use:   "encode IMAGE... --model DIR --out LATENT.safetensors",
		Short: "Encode images (one batch, same size) to a latent file with mean, logvar and the sampled latent",
		Args:  cobra.MinimumNArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return runVAEEncode(cmd, g, f, args) },
	}
	imageFlags(encode)
	samplingFlags(encode)
	encode.Flags().BoolVar(&f.scale, "scale", false, "multiply the latent by the config's scaling_factor (recorded in the file)")
	decode := &cobra.Command{
		Use:   "decode LATENT.safetensors --model DIR --out IMAGE.png",
		Short: "Decode a latent file to a PNG (a grid when it holds a batch)",
		Args:  cobra.ExactArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return runVAEDecode(cmd, g, f, args[0]) },
	}
	reconstruct := &cobra.Command{
		Use:   "reconstruct IMAGE... --model DIR --out IMAGE.png",
		Short: "Encode, sample (or take the mean) and decode images; writes a PNG (a grid for several)",
		Args:  cobra.MinimumNArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return runVAEReconstruct(cmd, g, f, args) },
	}
	imageFlags(reconstruct)
	samplingFlags(reconstruct)
	sample := &cobra.Command{
		Use:   "sample --model DIR --n N --seed S --out GRID.png",
		Short: "Decode N latents drawn from the prior N(0, I) to a PNG grid",
		Long: `Draws z ~ N(0, I) of shape (N, latent_channels, H/f, W/f) from --seed and decodes it. The
image size is --size WxH, or the config's sample_size squared. The prior is the VAE's own
(unscaled) latent space, so no scaling_factor is applied.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runVAESample(cmd, g, f) },
	}
	sample.Flags().IntVar(&f.n, "n", 4, "number of images")
	sample.Flags().Uint64Var(&f.seed, "seed", 0, "seed of the prior draw")
	sample.Flags().StringVar(&f.size, "size", "", "image size WxH (default: sample_size from config.json)")
	for _, c := range []*cobra.Command{decode, reconstruct, sample} {
		c.Flags().IntVar(&f.cols, "cols", 0, "grid columns for a batch (default: ceil(sqrt(N)))")
	}
	cmd.AddCommand(encode, decode, reconstruct, sample)
	return cmd
}

// vaeModel is a VAE loaded in a backend plugin, with the facts its ModelInfo reported.
type vaeModel struct {
	p *plugin.Plugin
	*vae.Model
	encodeTime, decodeTime   time.Duration
	encodeCalls, decodeCalls int
}

const vaeModelName = "vae"

func (f *vaeFlags) check(needOut bool) error {
	if f.model == "" {
		return fmt.Errorf("vae needs --model DIR")
	}
	if needOut && f.out == "" {
		return fmt.Errorf("vae needs --out FILE")
	}
	if f.mode != "" && f.mode != "sample" && f.mode != "mean" {
		return fmt.Errorf("--mode %q: want sample or mean", f.mode)
	}
	if f.size != "" && f.fit {
		return fmt.Errorf("--size and --fit exclude each other")
	}
	return nil
}

// loadVAE starts the backend and loads f.model as a vae.
func loadVAE(ctx context.Context, g *globals, f *vaeFlags) (*vaeModel, error) {
	dir, err := filepath.Abs(f.model)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("--model: %w", err)
	}
	p, err := startBackend(ctx, g, f.backend)
	if err != nil {
		return nil, err
	}
	m, err := vae.Load(ctx, p, vaeModelName, dir, nil)
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("load %s in %s: %w", f.model, p.Name(), err)
	}
	slog.Info("vae: loaded", "model", f.model, "backend", p.Name(), "facts", m.VAEFacts)
	return &vaeModel{p: p, Model: m}, nil
}

func (m *vaeModel) Close() { m.p.Close() }

// encode runs vae-encode on x (B,C,H,W) and returns mean and logvar (B,L,h,w).
func (m *vaeModel) encode(ctx context.Context, x []float32, shape [4]int) (mean, logvar []float32, lshape [4]int, err error) {
	start := time.Now()
	mt, lt, err := m.Encode(ctx, sdk.FromFloat32(int64s(shape[:]), x))
	if err != nil {
		return nil, nil, lshape, fmt.Errorf("encode in %s: %w", m.p.Name(), err)
	}
	m.encodeTime += time.Since(start)
	m.encodeCalls++
	// Encode checked both: float32, of one shape.
	mean, _ = mt.Float32s()
	logvar, _ = lt.Float32s()
	for i, d := range mt.Shape {
		lshape[i] = int(d)
	}
	slog.Info("vae: encoded", "image", shape, "latent", lshape, "elapsed", time.Since(start).Round(time.Millisecond))
	return mean, logvar, lshape, nil
}

// decode runs vae-decode on z (B,L,h,w) and returns the image batch (B,C,H,W).
func (m *vaeModel) decode(ctx context.Context, z []float32, shape [4]int) (*sdk.Tensor, error) {
	start := time.Now()
	img, err := m.Decode(ctx, sdk.FromFloat32(int64s(shape[:]), z))
	if err != nil {
		return nil, fmt.Errorf("decode in %s: %w", m.p.Name(), err)
	}
	m.decodeTime += time.Since(start)
	m.decodeCalls++
	slog.Info("vae: decoded", "latent", shape, "image", img.Shape, "elapsed", time.Since(start).Round(time.Millisecond))
	return img, nil
}

func int64s(v []int) []int64 {
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(x)
	}
	return out
}

func parseSize(s string) (w, h int, err error) {
	ws, hs, ok := strings.Cut(strings.ToLower(s), "x")
	if ok {
		w, err = strconv.Atoi(ws)
		if err == nil {
			h, err = strconv.Atoi(hs)
		}
	}
	if !ok || err != nil || w <= 0 || h <= 0 {
		return 0, 0, fmt.Errorf("--size %q: want WxH, e.g. 256x256", s)
	}
	return w, h, nil
}

// loadImages reads, resizes and stacks the images into one (B,C,H,W) batch in [-1,1].
func (m *vaeModel) loadImages(f *vaeFlags, paths []string) ([]float32, [4]int, error) {
	var shape [4]int
	c := m.InChannels
	if c == 0 {
		c = 3
	}
	var sw, sh int
	if f.size != "" {
		var err error
		if sw, sh, err = parseSize(f.size); err != nil {
			return nil, shape, err
		}
	}
	var x []float32
	for i, p := range paths {
		img, err := imageio.Load(p)
		if err != nil {
			return nil, shape, err
		}
		b := img.Bounds()
		w, h := b.Dx(), b.Dy()
		switch {
		case f.size != "":
			w, h = sw, sh
		case f.fit && m.DownsampleFactor > 0:
			w, h = imageio.FloorMultiple(w, h, m.DownsampleFactor)
		}
		if m.DownsampleFactor > 0 && (w%m.DownsampleFactor != 0 || h%m.DownsampleFactor != 0) {
			return nil, shape, fmt.Errorf("%s: image is %d×%d (W×H); the model needs multiples of its downsampling factor %d (use --fit or --size)", p, w, h, m.DownsampleFactor)
		}
		if w != b.Dx() || h != b.Dy() {
			if img, err = imageio.Resize(img, w, h); err != nil {
				return nil, shape, fmt.Errorf("%s: %w", p, err)
			}
			slog.Info("vae: resized", "image", p, "from", b.Size(), "to", image.Pt(w, h))
		}
		if i == 0 {
			shape = [4]int{len(paths), c, h, w}
		} else if w != shape[3] || h != shape[2] {
			return nil, shape, fmt.Errorf("%s: image is %d×%d but %s is %d×%d; one batch needs one size (use --size)", p, w, h, paths[0], shape[3], shape[2])
		}
		if x, err = imageio.ToTensor(x, img, c); err != nil {
			return nil, shape, fmt.Errorf("%s: model takes %d input channels: %w", p, c, err)
		}
	}
	return x, shape, nil
}

// pick returns the latent to decode: a draw z = mean + σ·ε, or the mean.
func (f *vaeFlags) pick(mean, logvar []float32) []float32 {
	if f.mode == "mean" {
		return append([]float32(nil), mean...)
	}
	return latent.Sample(mean, logvar, f.seed)
}

// writeImages writes a batch (B,C,H,W) as one PNG, a grid when B > 1 (cols <= 0: ⌈√B⌉ columns).
func writeImages(path string, img *sdk.Tensor, cols int) error {
	grid, err := imageio.FromBatch(img, cols)
	if err != nil {
		return err
	}
	return imageio.SavePNG(path, grid)
}

// encoded is a batch of image files and its encoding.
type encoded struct {
	shape, lshape [4]int // image (B,C,H,W) and latent (B,L,h,w)
	mean, logvar  []float32
}

// encodeFiles loads the model and encodes the image files as one batch; the caller closes m.
func encodeFiles(ctx context.Context, g *globals, f *vaeFlags, paths []string) (*vaeModel, *encoded, error) {
	if err := f.check(true); err != nil {
		return nil, nil, err
	}
	m, err := loadVAE(ctx, g, f)
	if err != nil {
		return nil, nil, err
	}
	e := &encoded{}
	x, shape, err := m.loadImages(f, paths)
	if err == nil {
		e.shape = shape
		e.mean, e.logvar, e.lshape, err = m.encode(ctx, x, shape)
	}
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	return m, e, nil
}

func runVAEEncode(cmd *cobra.Command, g *globals, f *vaeFlags, paths []string) error {
	m, e, err := encodeFiles(cmd.Context(), g, f, paths)
	if err != nil {
		return err
	}
	defer m.Close()
	shape, lshape, mean, logvar := e.shape, e.lshape, e.mean, e.logvar
	lf := &latent.File{Shape: lshape, Latent: f.pick(mean, logvar), Mean: mean, Logvar: logvar, Mode: f.mode, Seed: f.seed,
		ScalingFactor: m.ScalingFactor}
	if f.scale {
		if m.ScalingFactor == 0 {
			return fmt.Errorf("--scale: model %s reports no scaling_factor", f.model)
		}
		latent.Scale(lf.Latent, m.ScalingFactor)
		lf.Scaled = true
	}
	if m.ScalingFactor == 0 {
		lf.ScalingFactor = 1
	}
	if err := latent.Save(f.out, lf); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: latent %v (mode %s, seed %d, scaled %v) from %d image(s) %d×%d\n",
		f.out, lshape, f.mode, f.seed, lf.Scaled, shape[0], shape[3], shape[2])
	return nil
}

func runVAEDecode(cmd *cobra.Command, g *globals, f *vaeFlags, path string) error {
	if err := f.check(true); err != nil {
		return err
	}
	lf, err := latent.Load(path)
	if err != nil {
		return err
	}
	m, err := loadVAE(cmd.Context(), g, f)
	if err != nil {
		return err
	}
	defer m.Close()
	img, err := m.decode(cmd.Context(), lf.Decodable(), lf.Shape)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := writeImages(f.out, img, f.cols); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %d image(s) %d×%d from latent %v\n", f.out, img.Shape[0], img.Shape[3], img.Shape[2], lf.Shape)
	return nil
}

func runVAEReconstruct(cmd *cobra.Command, g *globals, f *vaeFlags, paths []string) error {
	m, e, err := encodeFiles(cmd.Context(), g, f, paths)
	if err != nil {
		return err
	}
	defer m.Close()
	lshape := e.lshape
	img, err := m.decode(cmd.Context(), f.pick(e.mean, e.logvar), lshape)
	if err != nil {
		return err
	}
	if err := writeImages(f.out, img, f.cols); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %d image(s) %d×%d via latent %v (mode %s, seed %d); encode %v, decode %v\n",
		f.out, img.Shape[0], img.Shape[3], img.Shape[2], lshape, f.mode, f.seed,
		m.encodeTime.Round(time.Millisecond), m.decodeTime.Round(time.Millisecond))
	return nil
}

func runVAESample(cmd *cobra.Command, g *globals, f *vaeFlags) error {
	if err := f.check(true); err != nil {
		return err
	}
	if f.n <= 0 {
		return fmt.Errorf("--n must be positive, got %d", f.n)
	}
	m, err := loadVAE(cmd.Context(), g, f)
	if err != nil {
		return err
	}
	defer m.Close()
	w, h := m.SampleSize, m.SampleSize
	if f.size != "" {
		if w, h, err = parseSize(f.size); err != nil {
			return err
		}
	}
	switch {
	case w <= 0:
		return fmt.Errorf("model %s gives no sample_size; pass --size WxH", f.model)
	case m.DownsampleFactor <= 0 || m.LatentChannels <= 0:
		return fmt.Errorf("model %s does not report its downsampling factor and latent channels (no config.json?)", f.model)
	case w%m.DownsampleFactor != 0 || h%m.DownsampleFactor != 0:
		return fmt.Errorf("image size %d×%d is not a multiple of the downsampling factor %d", w, h, m.DownsampleFactor)
	}
	shape := [4]int{f.n, m.LatentChannels, h / m.DownsampleFactor, w / m.DownsampleFactor}
	z := latent.Normal(shape[0]*shape[1]*shape[2]*shape[3], f.seed)
	img, err := m.decode(cmd.Context(), z, shape)
	if err != nil {
		return err
	}
	if err := writeImages(f.out, img, f.cols); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %d image(s) %d×%d from the prior (latent %v, seed %d)\n", f.out, img.Shape[0], img.Shape[3], img.Shape[2], shape, f.seed)
	return nil
}
