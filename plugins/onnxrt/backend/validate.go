package backend

import (
	"fmt"

	"github.com/modelrt/modelrt/sdk"
)

// Request limits, checked before anything proportional to a request is allocated or handed to
// ONNX Runtime: a sequence beyond the model's context, ids outside its vocabulary, logits over
// the memory budget, or a VAE input beyond sample_size × max_image_scale per side is
// InvalidArgument naming the input and the limit (docs/sdk.md, Limits).

func (b *Backend) currentLimits() sdk.Limits {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.limits
}

// vaeFacts keeps a VAE's facts for the request checks and returns them with the limits, to be
// published for the host's own checks.
func (m *model) vaeFacts(f sdk.VAEFacts, l sdk.Limits) sdk.VAEFacts {
	m.vae = f
	f.MaxInferBytes, f.MaxImageSize = l.InferBytes(), maxImageSide(f.SampleSize, l)
	return f
}

// unknownSampleSize is the training size assumed for a VAE whose config.json gives none
// (Stable Diffusion's 512 px).
const unknownSampleSize = 512

func maxImageSide(sampleSize int, l sdk.Limits) int {
	if sampleSize > 0 {
		return l.ImageSide(sampleSize)
	}
	return l.ImageSide(unknownSampleSize)
}

// checkLM checks a causal-lm request against the model's context and vocabulary and its
// logits against the memory budget; past is what the session holds (0 without one).
func (b *Backend) checkLM(m *model, in *sdk.CausalLMInput, past int) error {
	li := m.lm.Info()
	return sdk.CheckCausalLM(in, past, li.VocabSize, li.MaxContext, b.currentLimits().InferBytes())
}

// checkVAE checks a VAE input's channels and size, and against the budget its output and the
// mid-block attention's scores, which the exported graphs hold whole: batch × N² floats for
// the N positions of the latent (1 GiB for one 128×128 latent).
func (b *Backend) checkVAE(m *model, in *sdk.VAEInput) error {
	l := b.currentLimits()
	channels := m.vae.InChannels
	if in.Task == sdk.TaskVAEDecode {
		channels = m.vae.LatentChannels
	}
	f := max(m.vae.DownsampleFactor, 1)
	if err := sdk.CheckVAE(in, channels, f, maxImageSide(m.vae.SampleSize, l)); err != nil {
		return err
	}
	h, w, c := in.H, in.W, 2*max(m.vae.LatentChannels, 1) // encode: latent_parameters (N, 2L, H/f, W/f)
	lh, lw := in.H/f, in.W/f                              // the latent's positions
	if in.Task == sdk.TaskVAEDecode {
		h, w, c = in.H*f, in.W*f, max(m.vae.OutChannels, 3)
		lh, lw = in.H, in.W
	} else {
		h, w = lh, lw
	}
	positions := int64(max(lh, 1)) * int64(max(lw, 1))
	out := sdk.MulBytes(int64(in.N), int64(c), int64(max(h, 1)), int64(max(w, 1)), 4)
	scores := sdk.MulBytes(int64(in.N), positions, positions, 4)
	return sdk.CheckInferBytes(in.Task, fmt.Sprintf("batch %d of %d×%d latents (output and attention scores)", in.N, lh, lw),
		min(out+scores, 1<<62), l.InferBytes())
}
