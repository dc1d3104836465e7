package sdk

import (
	"fmt"
	"strconv"
)

// The facts a model reports in ModelInfo.Metadata are typed here, one struct per task, with one
// writer (Metadata) for backends and one parser (LMFactsOf, VAEFactsOf) for the host. On the
// wire they stay strings under these keys; a fact a backend does not know is left out, and
// reads back as its zero (or -1 for a token id).
const (
	MetaVocabSize        = "vocab_size"        // causal-lm: the logits' last dimension
	MetaNPositions       = "n_positions"       // causal-lm: context length
	MetaEOSTokenID       = "eos_token_id"      // causal-lm: end of sequence
	MetaInChannels       = "in_channels"       // vae: image channels the encoder takes
	MetaOutChannels      = "out_channels"      // vae: image channels the decoder gives
	MetaLatentChannels   = "latent_channels"   // vae: latent channels
	MetaDownsampleFactor = "downsample_factor" // vae: image size / latent size
	MetaScalingFactor    = "scaling_factor"    // vae: latents are multiplied by it for diffusion
	MetaSampleSize       = "sample_size"       // vae: the image size the model was trained at
	// The backend's request limits (docs/sdk.md, Limits), so that the host can refuse a request
	// before sending it (runtime/lm, runtime/vae).
	MetaMaxInferBytes = "max_infer_bytes" // both: the backend's max_infer_bytes for this model
	MetaMaxImageSize  = "max_image_size"  // vae: the largest image side in pixels (a latent's side × downsample_factor too)
)

// LMFacts are what a causal-lm model tells the host: runtime/lm's decode loop takes its
// vocabulary, context limit and end of sequence from them.
type LMFacts struct {
	VocabSize int // > 0
	Context   int // n_positions; 0 when the model has no fixed limit (or does not say)
	EOS       int // eos_token_id; set -1 when the model has none (0 is a token id)
	// MaxInferBytes is the memory one Infer call may take in the backend (max_infer_bytes); 0
	// when the backend does not say.
	MaxInferBytes int64
}

// Metadata returns f as ModelInfo.Metadata (add backend-specific keys to the map as you like).
func (f LMFacts) Metadata() map[string]string {
	m := map[string]string{}
	putInt(m, MetaVocabSize, f.VocabSize, 1)
	putInt(m, MetaNPositions, f.Context, 1)
	putInt(m, MetaEOSTokenID, f.EOS, 0)
	putInt64(m, MetaMaxInferBytes, f.MaxInferBytes)
	return m
}

// LMFactsOf reads the facts of a causal-lm model from its ModelInfo. A missing fact is 0 (-1
// for EOS); a value that is not an integer, or a negative limit, is an error naming the model
// and the key.
func LMFactsOf(info ModelInfo) (LMFacts, error) {
	f := LMFacts{EOS: -1}
	if err := readInts(info, map[string]*int{MetaVocabSize: &f.VocabSize, MetaNPositions: &f.Context, MetaEOSTokenID: &f.EOS}); err != nil {
		return f, err
	}
	return f, readInt64(info, MetaMaxInferBytes, &f.MaxInferBytes)
}

// Check says which facts the host needs and f lacks: a vocabulary size, a context length and
// an end-of-sequence id (the contract check "describe" asks for all three).
func (f LMFacts) Check() error {
	switch {
	case f.VocabSize <= 0:
		return fmt.Errorf("metadata %s = %d: want a positive vocabulary size", MetaVocabSize, f.VocabSize)
	case f.Context <= 0:
		return fmt.Errorf("metadata %s is missing (runtime/lm and generate need the context length)", MetaNPositions)
	case f.EOS < 0 || f.EOS >= f.VocabSize:
		return fmt.Errorf("metadata %s = %d: want an id in [0, %s)", MetaEOSTokenID, f.EOS, MetaVocabSize)
	}
	return nil
}

// VAEFacts are what a vae model tells the host: image and latent shapes, and the scaling of
// latents for diffusion.
type VAEFacts struct {
	InChannels       int     // 0 when unknown
	OutChannels      int     // 0 when unknown
	LatentChannels   int     // 0 when unknown
	DownsampleFactor int     // 0 when unknown
	ScalingFactor    float32 // 0 when unknown
	SampleSize       int     // 0 when unknown
	// The backend's limits for this model (docs/sdk.md, Limits); 0 when it does not say.
	MaxInferBytes int64 // max_infer_bytes
	MaxImageSize  int   // max_image_size: pixels per image side
}

// Metadata returns f as ModelInfo.Metadata, leaving out the facts that are 0.
func (f VAEFacts) Metadata() map[string]string {
	m := map[string]string{}
	putInt(m, MetaInChannels, f.InChannels, 1)
	putInt(m, MetaOutChannels, f.OutChannels, 1)
	putInt(m, MetaLatentChannels, f.LatentChannels, 1)
	putInt(m, MetaDownsampleFactor, f.DownsampleFactor, 1)
	putInt(m, MetaSampleSize, f.SampleSize, 1)
	putInt(m, MetaMaxImageSize, f.MaxImageSize, 1)
	putInt64(m, MetaMaxInferBytes, f.MaxInferBytes)
	if f.ScalingFactor != 0 {
		m[MetaScalingFactor] = strconv.FormatFloat(float64(f.ScalingFactor), 'g', -1, 32)
	}
	return m
}

// VAEFactsOf reads the facts of a vae model from its ModelInfo. A missing fact is 0; a value
// that is not a number, or a negative one, is an error naming the model and the key.
func VAEFactsOf(info ModelInfo) (VAEFacts, error) {
	var f VAEFacts
	if err := readInts(info, map[string]*int{MetaInChannels: &f.InChannels, MetaOutChannels: &f.OutChannels,
		MetaLatentChannels: &f.LatentChannels, MetaDownsampleFactor: &f.DownsampleFactor, MetaSampleSize: &f.SampleSize,
		MetaMaxImageSize: &f.MaxImageSize}); err != nil {
		return f, err
	}
	if err := readInt64(info, MetaMaxInferBytes, &f.MaxInferBytes); err != nil {
		return f, err
	}
	for k, v := range map[string]int{MetaInChannels: f.InChannels, MetaOutChannels: f.OutChannels, MetaLatentChannels: f.LatentChannels,
		MetaDownsampleFactor: f.DownsampleFactor, MetaSampleSize: f.SampleSize, MetaMaxImageSize: f.MaxImageSize} {
		if v < 0 {
			return f, fmt.Errorf("model %q: metadata %s = %d is negative", info.Name, k, v)
		}
	}
	if s, ok := info.Metadata[MetaScalingFactor]; ok {
		v, err := strconv.ParseFloat(s, 32)
		if err != nil {
			return f, fmt.Errorf("model %q: metadata %s = %q is not a number", info.Name, MetaScalingFactor, s)
		}
		f.ScalingFactor = float32(v)
	}
	return f, nil
}

// Check says which facts the host needs and f lacks: the channels of images and latents and the
// downsampling factor, without which no shape can be derived (the contract check "describe"
// asks for all four; the scaling factor and sample size are optional).
func (f VAEFacts) Check() error {
	if f.InChannels <= 0 || f.OutChannels <= 0 || f.LatentChannels <= 0 || f.DownsampleFactor <= 0 {
		return fmt.Errorf("metadata %s = %d, %s = %d, %s = %d, %s = %d: want all positive", MetaInChannels, f.InChannels,
			MetaOutChannels, f.OutChannels, MetaLatentChannels, f.LatentChannels, MetaDownsampleFactor, f.DownsampleFactor)
	}
	return nil
}

// putInt writes v under key when v >= least (below it, the fact is unknown).
func putInt(m map[string]string, key string, v, least int) {
	if v >= least {
		m[key] = strconv.Itoa(v)
	}
}

// putInt64 writes a limit v under key when it is set (> 0).
func putInt64(m map[string]string, key string, v int64) {
	if v > 0 {
		m[key] = strconv.FormatInt(v, 10)
	}
}

func readInts(info ModelInfo, dst map[string]*int) error {
	for key, p := range dst {
		s, ok := info.Metadata[key]
		if !ok {
			continue
		}
		v, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("model %q: metadata %s = %q is not an integer", info.Name, key, s)
		}
		*p = v
	}
	return nil
}

// readInt64 reads the limit under key into p (left as it is when missing); a value that is not
// a non-negative integer is an error naming the model and the key.
func readInt64(info ModelInfo, key string, p *int64) error {
	s, ok := info.Metadata[key]
	if !ok {
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return fmt.Errorf("model %q: metadata %s = %q is not a non-negative integer", info.Name, key, s)
	}
	*p = v
	return nil
}
