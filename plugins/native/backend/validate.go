package backend

import (
	"fmt"

	"github.com/modelrt/modelrt/native/gpt2"
	"github.com/modelrt/modelrt/native/vae"
	"github.com/modelrt/modelrt/sdk"
)

// Request limits, checked before anything proportional to a request is allocated: a request
// that would take more than the backend's memory budget, or a sequence longer than the
// model's context, is InvalidArgument and the process keeps serving (docs/sdk.md, Limits).

// gpt2StepFloats is the working memory of one position in gpt2.Forward, in units of n_embd
// floats: x, h, q, att, proj, lnf (6), qkv (3) and the MLP's hidden layer (Inner/n_embd).
const gpt2StepFloats = 9

// vaeLiveActivations is how many full-size activations of one VAE level are alive at once
// (a resnet's input, two norms, two convs and the upsampled copy), with the garbage collector's
// slack.
const vaeLiveActivations = 6

func (b *Backend) currentLimits() sdk.Limits {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.limits
}

// checkLM checks a causal-lm request against the model and the memory budget; past is what the
// session holds (0 without one).
func (b *Backend) checkLM(m *model, in *sdk.CausalLMInput, past int) error {
	c := m.gpt2.Config()
	limit := b.currentLimits().InferBytes()
	if err := sdk.CheckCausalLM(in, past, c.VocabSize, c.NPositions, limit); err != nil {
		return err
	}
	return sdk.CheckInferBytes("causal-lm: input_ids",
		fmt.Sprintf("batch %d × %d positions (logits, KV cache and activations)", in.Batch, in.Len),
		gpt2ForwardBytes(c, in.Batch, in.Len, past, in.OutLen()), limit)
}

// checkSession checks that a new session's first KV cache fits the memory budget.
func (b *Backend) checkSession(m *model, batch int) error {
	c := m.gpt2.Config()
	need := sdk.MulBytes(2, int64(c.NLayer), int64(batch), int64(min(64, c.NPositions)), int64(c.NEmbd), 4)
	return sdk.CheckInferBytes("open session", fmt.Sprintf("a KV cache of batch %d", batch), need, b.currentLimits().InferBytes())
}

// gpt2ForwardBytes bounds what gpt2.Forward allocates for B rows of T new positions after past
// cached ones: the logits, a grown KV cache (at most twice what is needed, up to n_positions)
// and the per-position working buffers.
func gpt2ForwardBytes(c gpt2.Config, B, T, past, outLen int) int64 {
	logits := sdk.MulBytes(int64(B), int64(outLen), int64(c.VocabSize), 4)
	cache := sdk.MulBytes(2, int64(c.NLayer), int64(B), int64(min(2*(past+T), c.NPositions)), int64(c.NEmbd), 4)
	perPos := int64(gpt2StepFloats*c.NEmbd+c.Inner()) * 4
	work := sdk.MulBytes(int64(B), int64(T), perPos)
	return satAdd(logits, cache, work)
}

// checkVAE checks a VAE request's channels and size against the model (sample_size ×
// max_image_scale per side) and its activations against the memory budget.
func (b *Backend) checkVAE(m *model, in *sdk.VAEInput) error {
	c := m.vae.Config()
	l := b.currentLimits()
	channels := c.InChannels
	if in.Task == sdk.TaskVAEDecode {
		channels = c.LatentChannels
	}
	f := c.DownsampleFactor()
	if err := sdk.CheckVAE(in, channels, f, l.ImageSide(c.SampleSize)); err != nil {
		return err
	}
	h, w := in.H, in.W
	if in.Task == sdk.TaskVAEDecode {
		h, w = h*f, w*f
	}
	name := "image"
	if in.Task == sdk.TaskVAEDecode {
		name = "latent"
	}
	return sdk.CheckInferBytes(in.Task+": "+name, fmt.Sprintf("batch %d of %d×%d images (activations)", in.N, h, w),
		vaeActivationBytes(c, in.N, h, w), l.InferBytes())
}

// vaeActivationBytes bounds the activations of an encode or decode of n images of h×w pixels:
// the widest level (channels × pixels at that level's resolution; a level also holds the next
// level's channels while it up- or downsamples) times vaeLiveActivations.
func vaeActivationBytes(c vae.Config, n, h, w int) int64 {
	var widest int64
	ch := c.BlockOutChannels
	for i := range ch {
		width := ch[i]
		if i+1 < len(ch) {
			width = max(width, ch[i+1])
		}
		widest = max(widest, sdk.MulBytes(int64(width), int64(max(h>>i, 1)), int64(max(w>>i, 1))))
	}
	return sdk.MulBytes(int64(n), widest, vaeLiveActivations, 4)
}

func satAdd(v ...int64) int64 {
	var s int64
	for _, x := range v {
		if s > (1<<63-1)-x {
			return 1<<63 - 1
		}
		s += x
	}
	return s
}
