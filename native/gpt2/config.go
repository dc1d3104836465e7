package gpt2

import (
	"github.com/modelrt/modelrt/sdk/modeldir"
	"github.com/modelrt/modelrt/sdk/modeldir/quant"
)

// Config holds the GPT2Config fields the forward pass depends on. The file format — config.json
// parsing and validation, the quantized layout — lives in sdk/modeldir, which the host shares.
type Config = modeldir.GPT2Config

// QuantFormat is the version of the quantized weight layout (config.json "quantization.format").
const QuantFormat = modeldir.QuantFormat

// LoadConfig reads and validates a Hugging Face GPT-2 config.json; errors name path and field.
func LoadConfig(path string) (Config, error) { return modeldir.LoadGPT2Config(path) }

// ParseConfig decodes and validates config.json contents; errors name the field.
func ParseConfig(data []byte) (Config, error) { return modeldir.ParseGPT2Config(data) }

// ErrQuantized marks a request to change the storage type of weights that are already
// quantized: requantizing would compound the rounding, so only float32 weights convert.
var ErrQuantized = modeldir.ErrQuantized

// WriteQuantized writes the GPT-2 directory src with its weight matrices stored as dt
// (quant.Int8 or quant.F16) to out, which Load reads back as is: modeldir.QuantizeGPT2.
func WriteQuantized(src, out string, dt quant.DType) error {
	return modeldir.QuantizeGPT2(src, out, dt)
}
