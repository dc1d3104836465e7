package vae

import (
	"encoding/json"
	"fmt"
	"os"
)

// Config is the part of a diffusers AutoencoderKL config.json this package understands.
type Config struct {
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
func (c Config) DownsampleFactor() int { return 1 << max(0, len(c.BlockOutChannels)-1) }

// DefaultConfig returns diffusers' AutoencoderKL defaults (a one-block 64-channel model), the
// values a config.json leaves out.
func DefaultConfig() Config {
	return Config{
		InChannels: 3, OutChannels: 3, LatentChannels: 4,
		BlockOutChannels: []int{64}, LayersPerBlock: 1, NormNumGroups: 32,
		SampleSize: 32, ScalingFactor: 0.18215, ActFn: "silu",
		UseQuantConv: true, UsePostQuantConv: true, MidBlockAddAttention: true,
	}
}

// ReadConfig reads a diffusers config.json; absent fields take DefaultConfig's values.
func ReadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("vae: read config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes and validates the JSON of a diffusers config.json; absent fields take
// DefaultConfig's values. Errors wrap ErrInvalidConfig.
func ParseConfig(data []byte) (Config, error) {
	cfg := DefaultConfig()
	if err := json.Unmarshal(data, &cfg); err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Validate reports the first field that this package cannot build a model from.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
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
