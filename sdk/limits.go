package sdk

import (
	"fmt"
	"math"
	"math/bits"
	"strconv"
)

// Limits every backend checks before it allocates anything proportional to a request: one
// request must never be able to exhaust a backend's memory, whatever the client sends. The
// checks below answer InvalidArgument naming the input and the limit, so the request fails and
// the process keeps serving.
const (
	// DefaultMaxInferBytes is the memory one Infer call may take for its outputs and working
	// buffers (logits, KV cache growth, activations) unless the backend is configured otherwise
	// (config attribute max_infer_bytes of the repository's backends).
	DefaultMaxInferBytes int64 = 2 << 30
	// DefaultMaxImageScale: a VAE takes images up to this many times its training size
	// (config.json's sample_size) per side, and latents of such images (config attribute
	// max_image_scale). The mid-block attention is quadratic in the latent's positions: a
	// 128×128 latent (N = 16384) takes the 16-px test VAE 18 s on two cores.
	DefaultMaxImageScale = 4
)

// MulBytes returns the product of n, saturated at math.MaxInt64 (a request's declared sizes
// can multiply past int64).
func MulBytes(n ...int64) int64 {
	p := int64(1)
	for _, v := range n {
		if v <= 0 {
			return 0
		}
		hi, lo := bits.Mul64(uint64(p), uint64(v))
		if hi != 0 || lo > math.MaxInt64 {
			return math.MaxInt64
		}
		p = int64(lo)
	}
	return p
}

// FormatBytes prints n in the largest binary unit that keeps it ≥ 1 (for error messages).
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	f, u := float64(n), 0
	for f >= unit && u < 6 {
		f /= unit
		u++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTPE"[u-1])
}

// CheckInferBytes answers InvalidArgument when need > limit (limit ≤ 0: no limit). input names
// the tensor whose shape asks for the memory and what describes the product.
func CheckInferBytes(input, what string, need, limit int64) error {
	if limit > 0 && need > limit {
		return InvalidArgument("%s: %s needs %s, more than this backend's limit of %s per call (max_infer_bytes)",
			input, what, FormatBytes(need), FormatBytes(limit))
	}
	return nil
}

// CheckCausalLM checks a causal-lm request against its model before the backend allocates
// anything for it: past+Len within nPositions (the context; past is what the session holds,
// 0 without one; nPositions ≤ 0: unbounded), every id in [0, vocab) (vocab ≤ 0: unchecked),
// and the float32 logits it asks for (Batch × OutLen × vocab) within maxBytes (≤ 0: no limit).
// A backend adds its own working memory with CheckInferBytes.
func CheckCausalLM(in *CausalLMInput, past, vocab, nPositions int, maxBytes int64) error {
	if nPositions > 0 && past+in.Len > nPositions {
		return InvalidArgument("causal-lm: input_ids: %d positions (%d in the session + %d new) exceed the model's context n_positions = %d",
			past+in.Len, past, in.Len, nPositions)
	}
	if vocab > 0 {
		for i, id := range in.IDs {
			if id < 0 || id >= int64(vocab) {
				return InvalidArgument("causal-lm: input_ids[%d,%d] = %d is outside the vocabulary [0, %d)", i/in.Len, i%in.Len, id, vocab)
			}
		}
	}
	if vocab > 0 {
		need := MulBytes(int64(in.Batch), int64(in.OutLen()), int64(vocab), 4)
		return CheckInferBytes("causal-lm: input_ids", fmt.Sprintf("logits of batch %d × %d positions × vocab %d", in.Batch, in.OutLen(), vocab), need, maxBytes)
	}
	return nil
}

// MaxImageSide is the per-side image limit of a VAE trained at sampleSize pixels: sampleSize ×
// scale (scale ≤ 0: DefaultMaxImageScale).
func MaxImageSide(sampleSize, scale int) int {
	if scale <= 0 {
		scale = DefaultMaxImageScale
	}
	return sampleSize * scale
}

// CheckVAE checks a vae-encode or vae-decode request against its model before anything is
// allocated for it: the input's channels (channels ≤ 0: unchecked) and its image size, H and W
// of the image or h·factor and w·factor of the latent, within maxSide pixels (≤ 0: no limit).
func CheckVAE(in *VAEInput, channels, factor, maxSide int) error {
	name, field := "image", "in_channels"
	if in.Task == TaskVAEDecode {
		name, field = "latent", "latent_channels"
	}
	if in.N <= 0 || in.C <= 0 || in.H <= 0 || in.W <= 0 {
		return InvalidArgument("%s: %s shape [%d,%d,%d,%d] has a non-positive dimension", in.Task, name, in.N, in.C, in.H, in.W)
	}
	if channels > 0 && in.C != channels {
		return InvalidArgument("%s: %s has %d channels, the model takes %d (%s)", in.Task, name, in.C, channels, field)
	}
	factor = max(factor, 1)
	h, w := in.H, in.W
	if in.Task == TaskVAEDecode {
		h, w = in.H*factor, in.W*factor
	}
	if maxSide > 0 && (h > maxSide || w > maxSide) {
		if in.Task == TaskVAEDecode {
			return InvalidArgument("%s: latent of %d×%d (H×W) decodes to a %d×%d image, larger than this model's limit of %d pixels per side (%d per latent side; max_image_scale × sample_size)",
				in.Task, in.H, in.W, h, w, maxSide, maxSide/factor)
		}
		return InvalidArgument("%s: image of %d×%d (H×W) is larger than this model's limit of %d pixels per side (max_image_scale × sample_size)",
			in.Task, h, w, maxSide)
	}
	return nil
}

// Limits are a backend's request limits as its config block sets them (zero values: the
// defaults). The repository's backends embed it; LimitAttributes declares it in ConfigSchema.
type Limits struct {
	MaxInferBytes int64 `json:"max_infer_bytes"`
	MaxImageScale int   `json:"max_image_scale"`
}

// LimitAttributes are the config attributes of Limits, for DescribeResponse.ConfigSchema.
var LimitAttributes = []ConfigAttribute{
	{Name: "max_infer_bytes", Type: "number", Description: fmt.Sprintf("memory one Infer call may take for its outputs and working buffers; larger requests are InvalidArgument (default %d = 2 GiB)", DefaultMaxInferBytes)},
	{Name: "max_image_scale", Type: "number", Description: fmt.Sprintf("a VAE takes images (and latents of images) up to this many times its sample_size per side (default %d)", DefaultMaxImageScale)},
}

// Check reports a negative limit as InvalidArgument; backend names the backend.
func (l Limits) Check(backend string) error {
	if l.MaxInferBytes < 0 || l.MaxImageScale < 0 {
		return InvalidArgument("%s config: max_infer_bytes (%d) and max_image_scale (%d) must be ≥ 0", backend, l.MaxInferBytes, l.MaxImageScale)
	}
	return nil
}

// InferBytes is MaxInferBytes, or DefaultMaxInferBytes when unset.
func (l Limits) InferBytes() int64 {
	if l.MaxInferBytes > 0 {
		return l.MaxInferBytes
	}
	return DefaultMaxInferBytes
}

// ImageSide is MaxImageSide(sampleSize, MaxImageScale).
func (l Limits) ImageSide(sampleSize int) int { return MaxImageSide(sampleSize, l.MaxImageScale) }
