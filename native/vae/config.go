package vae

import "github.com/modelrt/modelrt/sdk/modeldir"

// Config is the part of a diffusers AutoencoderKL config.json this package understands. The
// file format — parsing, defaults, validation — lives in sdk/modeldir, which the host shares.
type Config = modeldir.VAEConfig

// DefaultConfig returns diffusers' AutoencoderKL defaults, the values a config.json leaves out.
func DefaultConfig() Config { return modeldir.DefaultVAEConfig() }

// ReadConfig reads a diffusers config.json; absent fields take DefaultConfig's values.
func ReadConfig(path string) (Config, error) { return modeldir.ReadVAEConfig(path) }

// ParseConfig decodes and validates the JSON of a diffusers config.json. Errors wrap
// ErrInvalidConfig.
func ParseConfig(data []byte) (Config, error) { return modeldir.ParseVAEConfig(data) }

// ErrInvalidConfig marks a config.json this package cannot build a model from.
var ErrInvalidConfig = modeldir.ErrInvalidVAEConfig

// WeightFiles are the weight file names Load looks for, in order.
var WeightFiles = modeldir.VAEWeightFiles
