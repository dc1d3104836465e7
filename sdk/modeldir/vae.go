package modeldir

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// ErrInvalidVAEConfig marks a config.json no AutoencoderKL can be built from.
var ErrInvalidVAEConfig = errors.New("vae: invalid config")

// VAEWeightFiles are the weight file names of an AutoencoderKL directory, in the order readers
// look for them: diffusers' name first, then the plain one.
var VAEWeightFiles = []string{"diffusion_pytorch_model.safetensors", "model.safetensors"}

// VAEConfig is the part of a diffusers AutoencoderKL config.json that modelrt understands
// (docs/contracts.md, "Model directories").
type VAEConfig struct {
	InChannels       int      `json:"in_channels"`
	OutChannels      int      `json:"out_channels"`
	LatentChannels   int      `json:"latent_channels"`
	BlockOutChannels []int    `json:"block_out_channels"`
	LayersPerBlock   int      `json:"layers_per_block"`
	NormNumGroups    int      `json:"norm_num_groups"`
	SampleSize       int      `json:"sample_size"`
	ScalingFactor    float32  `json:"scaling_factor"`
	ActFn            string   `json:"act_fn"`
	DownBlockTypes   []string `json:"down_block_types"`
	UpBlockTypes     []string `json:"up_block_types"`
	// UseQuantConv, UsePostQuantConv and MidBlockAddAttention default to true, as in diffusers.
	UseQuantConv         bool `json:"use_quant_conv"`
	UsePostQuantConv     bool `json:"use_post_quant_conv"`
	MidBlockAddAttention bool `json:"mid_block_add_attention"`
}

// DownsampleFactor is f = 2^(len(BlockOutChannels)−1): every down block but the last halves the
// image, so an H×W image encodes to an (H/f)×(W/f) latent.
func (c VAEConfig) DownsampleFactor() int { return 1 << max(0, len(c.BlockOutChannels)-1) }

// DefaultVAEConfig returns diffusers' AutoencoderKL defaults (a one-block 64-channel model), the
// values a config.json leaves out.
func DefaultVAEConfig() VAEConfig {
	return VAEConfig{
		InChannels: 3, OutChannels: 3, LatentChannels: 4,
		BlockOutChannels: []int{64}, LayersPerBlock: 1, NormNumGroups: 32,
		SampleSize: 32, ScalingFactor: 0.18215, ActFn: "silu",
		UseQuantConv: true, UsePostQuantConv: true, MidBlockAddAttention: true,
	}
}

// ReadVAEConfig reads a diffusers config.json; absent fields take DefaultVAEConfig's values.
func ReadVAEConfig(path string) (VAEConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return VAEConfig{}, fmt.Errorf("vae: read config: %w", err)
	}
	cfg, err := ParseVAEConfig(data)
	if err != nil {
		return VAEConfig{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// ParseVAEConfig decodes and validates the JSON of a diffusers config.json; absent fields take
// DefaultVAEConfig's values. Errors wrap ErrInvalidVAEConfig.
func ParseVAEConfig(data []byte) (VAEConfig, error) {
	cfg := DefaultVAEConfig()
	if err := json.Unmarshal(data, &cfg); err != nil {
		return VAEConfig{}, fmt.Errorf("%w: %w", ErrInvalidVAEConfig, err)
	}
	if err := cfg.Validate(); err != nil {
		return VAEConfig{}, err
	}
	return cfg, nil
}

// Validate reports the first field no AutoencoderKL can be built from.
func (c VAEConfig) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidVAEConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case c.InChannels <= 0 || c.OutChannels <= 0 || c.LatentChannels <= 0:
		return bad("in_channels %d, out_channels %d, latent_channels %d must be positive", c.InChannels, c.OutChannels, c.LatentChannels)
	case len(c.BlockOutChannels) == 0 || len(c.BlockOutChannels) > 8:
		return bad("block_out_channels has %d entries, want 1 to 8", len(c.BlockOutChannels))
	case c.LayersPerBlock <= 0:
		return bad("layers_per_block %d must be positive", c.LayersPerBlock)
	case c.NormNumGroups <= 0:
		return bad("norm_num_groups %d must be positive", c.NormNumGroups)
	case c.ActFn != "" && c.ActFn != "silu" && c.ActFn != "swish":
		return bad("act_fn %q is not supported (only silu)", c.ActFn)
	}
	for i, ch := range c.BlockOutChannels {
		if ch <= 0 || ch%c.NormNumGroups != 0 {
			return bad("block_out_channels[%d] = %d is not a positive multiple of norm_num_groups %d", i, ch, c.NormNumGroups)
		}
	}
	for _, lst := range []struct {
		field, want string
		types       []string
	}{{"down_block_types", "DownEncoderBlock2D", c.DownBlockTypes}, {"up_block_types", "UpDecoderBlock2D", c.UpBlockTypes}} {
		if lst.types == nil {
			continue
		}
		if len(lst.types) != len(c.BlockOutChannels) {
			return bad("%s has %d entries, block_out_channels %d", lst.field, len(lst.types), len(c.BlockOutChannels))
		}
		for i, t := range lst.types {
			if t != lst.want {
				return bad("%s[%d] = %q is not supported (only %s)", lst.field, i, t, lst.want)
			}
		}
	}
	return nil
}
