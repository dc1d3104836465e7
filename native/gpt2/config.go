package gpt2

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/modelrt/modelrt/native/quant"
)

// Config holds the GPT2Config fields the forward pass depends on.
type Config struct {
	VocabSize          int     // vocab_size
	NPositions         int     // n_positions (n_ctx in old configs): the longest sequence
	NEmbd              int     // n_embd, C
	NLayer             int     // n_layer
	NHead              int     // n_head; NEmbd must be a multiple of it
	NInner             int     // n_inner; 0 (JSON null) means 4·NEmbd
	LayerNormEpsilon   float64 // layer_norm_epsilon (default 1e-5)
	ActivationFunction string  // activation_function: "gelu_new" (or its alias "gelu_pytorch_tanh")
	BOSTokenID         int     // bos_token_id (default 50256, GPT-2's <|endoftext|>, or vocab_size-1 if smaller)
	EOSTokenID         int     // eos_token_id (same default)
	// Weights is quantization.dtype: how model.safetensors stores the weight matrices ("int8",
	// "fp16"), written by WriteQuantized; F32 (empty) for an ordinary checkpoint.
	Weights quant.DType
}

// Inner returns the MLP hidden width (n_inner, or 4·n_embd when unset).
func (c Config) Inner() int {
	if c.NInner > 0 {
		return c.NInner
	}
	return 4 * c.NEmbd
}

// HeadDim returns NEmbd / NHead.
func (c Config) HeadDim() int { return c.NEmbd / c.NHead }

// rawConfig mirrors config.json with pointers, so that a missing field can be told from zero.
type rawConfig struct {
	VocabSize          *int     `json:"vocab_size"`
	NPositions         *int     `json:"n_positions"`
	NCtx               *int     `json:"n_ctx"`
	NEmbd              *int     `json:"n_embd"`
	NLayer             *int     `json:"n_layer"`
	NHead              *int     `json:"n_head"`
	NInner             *int     `json:"n_inner"`
	LayerNormEpsilon   *float64 `json:"layer_norm_epsilon"`
	ActivationFunction *string  `json:"activation_function"`
	BOSTokenID         *int     `json:"bos_token_id"`
	EOSTokenID         *int     `json:"eos_token_id"`
	// Variants of attention this implementation does not compute; refused rather than ignored.
	ScaleAttnWeights        *bool `json:"scale_attn_weights"`
	ScaleAttnByInverseLayer *bool `json:"scale_attn_by_inverse_layer_idx"`
	ReorderAndUpcastAttn    *bool `json:"reorder_and_upcast_attn"`
	Quantization            *struct {
		Format string `json:"format"`
		DType  string `json:"dtype"`
	} `json:"quantization"`
}

// QuantFormat is the version of the quantized weight layout written by WriteQuantized and
// named in config.json's "quantization.format" (docs/kernels.md).
const QuantFormat = "modelrt-weights/v1"

// LoadConfig reads and validates a Hugging Face GPT-2 config.json. Errors name path and the
// offending field.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("gpt2: read config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("gpt2: %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes and validates config.json contents; errors name the field.
func ParseConfig(data []byte) (Config, error) {
	var r rawConfig
	if err := json.Unmarshal(data, &r); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return Config{}, fmt.Errorf("field %q: %s is not a valid %s", te.Field, te.Value, te.Type)
		}
		return Config{}, fmt.Errorf("invalid JSON: %w", err)
	}
	var missing []string
	need := func(name string, p *int) int {
		if p == nil {
			missing = append(missing, name)
			return 0
		}
		return *p
	}
	c := Config{
		VocabSize: need("vocab_size", r.VocabSize),
		NEmbd:     need("n_embd", r.NEmbd),
		NLayer:    need("n_layer", r.NLayer),
		NHead:     need("n_head", r.NHead),
	}
	switch {
	case r.NPositions != nil:
		c.NPositions = *r.NPositions
	case r.NCtx != nil:
		c.NPositions = *r.NCtx
	default:
		missing = append(missing, "n_positions")
	}
	if len(missing) > 0 {
		return Config{}, fmt.Errorf("missing field %q", missing[0])
	}
	if r.NInner != nil {
		c.NInner = *r.NInner
	}
	c.LayerNormEpsilon = 1e-5
	if r.LayerNormEpsilon != nil {
		c.LayerNormEpsilon = *r.LayerNormEpsilon
	}
	c.ActivationFunction = "gelu_new"
	if r.ActivationFunction != nil {
		c.ActivationFunction = *r.ActivationFunction
	}
	// HF's default is 50256 (<|endoftext|>); a smaller vocabulary without the fields gets its
	// last id instead of an id it cannot hold.
	c.BOSTokenID = min(50256, c.VocabSize-1)
	c.EOSTokenID = c.BOSTokenID
	if r.BOSTokenID != nil {
		c.BOSTokenID = *r.BOSTokenID
	}
	if r.EOSTokenID != nil {
		c.EOSTokenID = *r.EOSTokenID
	}
	switch {
	case r.ScaleAttnWeights != nil && !*r.ScaleAttnWeights:
		return Config{}, errors.New(`field "scale_attn_weights": false is not supported (scores are always scaled by 1/sqrt(head_dim))`)
	case r.ScaleAttnByInverseLayer != nil && *r.ScaleAttnByInverseLayer:
		return Config{}, errors.New(`field "scale_attn_by_inverse_layer_idx": true is not supported`)
	case r.ReorderAndUpcastAttn != nil && *r.ReorderAndUpcastAttn:
		return Config{}, errors.New(`field "reorder_and_upcast_attn": true is not supported`)
	}
	if q := r.Quantization; q != nil {
		if q.Format != QuantFormat {
			return Config{}, fmt.Errorf(`field "quantization.format": %q is not supported (want %q)`, q.Format, QuantFormat)
		}
		dt, err := quant.ParseDType(q.DType)
		if err != nil {
			return Config{}, fmt.Errorf(`field "quantization.dtype": %w`, err)
		}
		c.Weights = dt
	}
	if c.Weights == quant.F32 {
		c.Weights = ""
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate checks the fields' ranges and consistency; errors name the config.json field.
func (c Config) Validate() error {
	positive := []struct {
		name string
		v    int
	}{{"vocab_size", c.VocabSize}, {"n_positions", c.NPositions}, {"n_embd", c.NEmbd}, {"n_layer", c.NLayer}, {"n_head", c.NHead}}
	for _, f := range positive {
		if f.v <= 0 {
			return fmt.Errorf("field %q: %d must be positive", f.name, f.v)
		}
	}
	switch {
	case c.NEmbd%c.NHead != 0:
		return fmt.Errorf("field \"n_head\": %d does not divide n_embd %d", c.NHead, c.NEmbd)
	case c.NInner < 0:
		return fmt.Errorf("field \"n_inner\": %d must be positive or null", c.NInner)
	case !(c.LayerNormEpsilon > 0):
		return fmt.Errorf("field \"layer_norm_epsilon\": %g must be positive", c.LayerNormEpsilon)
	case c.ActivationFunction != "gelu_new" && c.ActivationFunction != "gelu_pytorch_tanh":
		return fmt.Errorf("field \"activation_function\": %q is not supported (want \"gelu_new\")", c.ActivationFunction)
	case c.BOSTokenID < 0 || c.BOSTokenID >= c.VocabSize:
		return fmt.Errorf("field \"bos_token_id\": %d is outside the vocabulary [0,%d)", c.BOSTokenID, c.VocabSize)
	case c.EOSTokenID < 0 || c.EOSTokenID >= c.VocabSize:
		return fmt.Errorf("field \"eos_token_id\": %d is outside the vocabulary [0,%d)", c.EOSTokenID, c.VocabSize)
	}
	return nil
}
