package text2image

import (
	"context"
	"fmt"
	"image"
	"math"
	"slices"
	"time"

	"github.com/modelrt/modelrt/runtime/generate"
	"github.com/modelrt/modelrt/runtime/imageio"
	"github.com/modelrt/modelrt/runtime/lm"
	"github.com/modelrt/modelrt/runtime/vae"
	"github.com/modelrt/modelrt/sdk"
)

// MaxImages bounds Options.N.
const MaxImages = 10

// Options control Pipeline.Generate. Start from DefaultOptions.
type Options struct {
	N           int     // images, 1..MaxImages; image r is drawn from seed Seed+r
	Seed        uint64  // seed of image 0
	Temperature float64 // ≥ 0; 0 = greedy
	TopK        int     // ≥ 0; 0 = off
	TopP        float64 // (0, 1]; 1 = off
	// Guidance is the classifier-free guidance scale s ≥ 0 (1 = the conditional prior alone;
	// the null caption is prefix_length pad ids).
	Guidance float64
	// Scale is the nearest-neighbour upscale factor of the decoded images (1 = native size);
	// Model.ScaleFor turns a requested size into it.
	Scale int
}

// DefaultOptions: one image, seed 0, temperature 1, no top-k/top-p, guidance 2 (the best
// character accuracy of examples/models/glyph-prior's evaluation), native size.
func DefaultOptions() Options {
	return Options{N: 1, Temperature: 1, TopP: 1, Guidance: 2, Scale: 1}
}

// Validate names the first option out of range.
func (o Options) Validate() error {
	switch {
	case o.N < 1 || o.N > MaxImages:
		return fmt.Errorf("%w: n %d: want 1 to %d images", ErrInvalid, o.N, MaxImages)
	case !(o.Guidance >= 0) || math.IsInf(o.Guidance, 0):
		return fmt.Errorf("%w: guidance %v: want a finite value ≥ 0 (1 = off)", ErrInvalid, o.Guidance)
	case o.Scale < 1:
		return fmt.Errorf("%w: upscale factor %d: want ≥ 1", ErrInvalid, o.Scale)
	}
	if err := o.sampling().Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

func (o Options) sampling() generate.Sampling {
	return generate.Sampling{Temperature: o.Temperature, TopK: o.TopK, TopP: o.TopP, RepetitionPenalty: 1, Seed: o.Seed}
}

// ScaleFor returns the nearest-neighbour factor that turns the native image size into w×h;
// any other size is ErrInvalid naming the sizes it could be.
func (m *Model) ScaleFor(w, h int) (int, error) {
	nw, nh := m.NativeSize()
	if w > 0 && h > 0 && w%nw == 0 && h%nh == 0 && w/nw == h/nh {
		return w / nw, nil
	}
	return 0, fmt.Errorf("%w: size %dx%d: the model draws %dx%d images; want that or a whole multiple (%dx%d, %dx%d, …)",
		ErrInvalid, w, h, nw, nh, 2*nw, 2*nh, 4*nw, 4*nh)
}

// Pipeline runs a Model: the prior as a causal LM in one backend, the VAE in one (the same or
// another).
type Pipeline struct {
	Model   *Model
	Prior   *lm.Model
	VAE     sdk.Backend
	VAEName string // the VAE's name in VAE, loaded with task sdk.TaskVAE
}

// Open loads m's prior (task causal-lm) and VAE (task vae) in b under the names prior and vae.
func Open(ctx context.Context, b lm.Backend, m *Model, prior, vae string) (*Pipeline, error) {
	p, err := lm.Load(ctx, b, prior, m.Dir, nil)
	if err != nil {
		return nil, fmt.Errorf("load prior %s: %w", m.Dir, err)
	}
	if _, err := b.LoadModel(ctx, &sdk.LoadModelRequest{Name: vae, Path: m.VAEDir, Task: sdk.TaskVAE}); err != nil {
		return nil, fmt.Errorf("load VAE %s: %w", m.VAEDir, err)
	}
	return &Pipeline{Model: m, Prior: p, VAE: b, VAEName: vae}, nil
}

// Result is the outcome of one caption.
type Result struct {
	Caption      string  // the normalised caption
	PromptTokens int     // its BPE tokens
	Codes        [][]int // per image, H·W codes in raster order
	Images       []image.Image
	PriorMS      float64 // sampling the codes
	DecodeMS     float64 // codebook lookup and VAE decode
}

// Generate draws o.N images for caption.
func (p *Pipeline) Generate(ctx context.Context, caption string, o Options) (*Result, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	res, err := p.Codes(ctx, caption, o)
	if err != nil {
		return nil, err
	}
	res.PriorMS = ms(time.Since(start))
	start = time.Now()
	if res.Images, err = p.Decode(ctx, res.Codes, o.Scale); err != nil {
		return nil, err
	}
	res.DecodeMS = ms(time.Since(start))
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }

// Codes samples o.N rows of codes for caption: one session holds the N conditional rows and,
// when o.Guidance ≠ 1, N null-caption rows; draws are restricted to the code ids.
func (p *Pipeline) Codes(ctx context.Context, caption string, o Options) (*Result, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	m := p.Model
	prompt, normalized, tokens, err := m.Prompt(caption)
	if err != nil {
		return nil, err
	}
	f := m.Facts
	prompts := make([][]int, o.N)
	for i := range prompts {
		prompts[i] = prompt
	}
	gopts := generate.Options{
		MaxNewTokens: f.Codes(),
		MaxContext:   p.Prior.Context,
		Sampling:     o.sampling(),
		Allowed:      []generate.IDRange{{Lo: f.CodeOffset, Hi: f.CodeOffset + f.CodebookSize}},
	}
	batch := o.N
	if o.Guidance != 1 {
		gopts.Guidance = &generate.Guidance{Scale: o.Guidance, Unconditional: [][]int{m.NullPrompt()}}
		batch = 2 * o.N
	}
	sess, err := p.Prior.OpenStepSession(ctx, batch) // one image without guidance shares the prior's steps
	if err != nil {
		return nil, fmt.Errorf("text2image: open a session of %d rows: %w", batch, err)
	}
	defer sess.Close()
	gen, err := generate.Generate(ctx, sess, prompts, gopts)
	if err != nil {
		return nil, fmt.Errorf("text2image: %w", err)
	}
	res := &Result{Caption: normalized, PromptTokens: tokens, Codes: make([][]int, o.N)}
	for i, row := range gen.Rows {
		drawn := row.IDs[len(prompt):]
		if len(drawn) != f.Codes() {
			return nil, fmt.Errorf("text2image: image %d: %d codes drawn (%s), want %d", i, len(drawn), row.FinishReason, f.Codes())
		}
		codes := make([]int, len(drawn))
		for t, id := range drawn {
			codes[t] = id - f.CodeOffset
		}
		res.Codes[i] = codes
	}
	return res, nil
}

// Decode looks the codes up in the codebook and decodes the latents in one VAE call; images
// are upscaled by scale (nearest neighbour).
func (p *Pipeline) Decode(ctx context.Context, codes [][]int, scale int) ([]image.Image, error) {
	t, err := p.DecodeTensor(ctx, codes, scale)
	if err != nil {
		return nil, err
	}
	x, _ := t.Float32s()
	n, c, h, w := int(t.Shape[0]), int(t.Shape[1]), int(t.Shape[2]), int(t.Shape[3])
	imgs := make([]image.Image, n)
	for i := range imgs {
		if imgs[i], err = imageio.FromTensor(x[i*c*h*w:(i+1)*c*h*w], c, h, w); err != nil {
			return nil, fmt.Errorf("text2image: VAE decode: %w", err)
		}
	}
	return imgs, nil
}

// DecodeTensor is Decode returning the VAE's output batch (N, C, H·scale, W·scale), float32 in
// [-1, 1].
func (p *Pipeline) DecodeTensor(ctx context.Context, codes [][]int, scale int) (*sdk.Tensor, error) {
	z, shape, err := p.Model.Latents(codes)
	if err != nil {
		return nil, err
	}
	// runtime/vae checks the output: a float32 (N, C, H, W) image.
	vm := &vae.Model{Backend: p.VAE, Name: p.VAEName}
	it, err := vm.Decode(ctx, sdk.FromFloat32([]int64{int64(shape[0]), int64(shape[1]), int64(shape[2]), int64(shape[3])}, z))
	if err != nil {
		return nil, fmt.Errorf("text2image: VAE decode: %w", err)
	}
	x, _ := it.Float32s()
	if scale <= 1 {
		return sdk.FromFloat32(slices.Clone(it.Shape), x), nil
	}
	nc, h, w := int(it.Shape[0]*it.Shape[1]), int(it.Shape[2]), int(it.Shape[3])
	return sdk.FromFloat32([]int64{it.Shape[0], it.Shape[1], int64(h * scale), int64(w * scale)}, Upscale(x, nc, h, w, scale)), nil
}

// Upscale enlarges nc planes of h×w values k times by nearest neighbour: each value becomes a
// k×k block. Returns (nc, h·k, w·k).
func Upscale(x []float32, nc, h, w, k int) []float32 {
	H, W := h*k, w*k
	out := make([]float32, nc*H*W)
	for p := range nc {
		src, dst := x[p*h*w:(p+1)*h*w], out[p*H*W:(p+1)*H*W]
		for y := range H {
			row := src[(y/k)*w : (y/k+1)*w]
			for xx := range W {
				dst[y*W+xx] = row[xx/k]
			}
		}
	}
	return out
}
