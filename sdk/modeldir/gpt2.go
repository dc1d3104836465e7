package modeldir

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/modelrt/modelrt/sdk/modeldir/quant"
)

// GPT2Config holds the fields of a Hugging Face GPT-2 config.json that a GPT2LMHeadModel
// forward pass depends on (docs/contracts.md, "Model directories").
type GPT2Config struct {
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
	// "fp16"), written by QuantizeGPT2; F32 (empty) for an ordinary checkpoint.
	Weights quant.DType
}

// Inner returns the MLP hidden width (n_inner, or 4·n_embd when unset).
func (c GPT2Config) Inner() int {
	if c.NInner > 0 {
		return c.NInner
	}
	return 4 * c.NEmbd
}

// HeadDim returns NEmbd / NHead.
func (c GPT2Config) HeadDim() int { return c.NEmbd / c.NHead }

// GPT2Shapes lists the HF GPT2LMHeadModel tensors of a model with config cfg and their shapes
// (Conv1D weights [in,out]; no lm_head.weight, which is tied to wte). These are the names
// QuantizeGPT2 writes and the native backend and onnx/export read.
func GPT2Shapes(cfg GPT2Config) map[string][]int64 {
	V, P, C, I := int64(cfg.VocabSize), int64(cfg.NPositions), int64(cfg.NEmbd), int64(cfg.Inner())
	s := map[string][]int64{
		"transformer.wte.weight": {V, C}, "transformer.wpe.weight": {P, C},
		"transformer.ln_f.weight": {C}, "transformer.ln_f.bias": {C},
	}
	for i := 0; i < cfg.NLayer; i++ {
		p := fmt.Sprintf("transformer.h.%d.", i)
		for name, shape := range map[string][]int64{
			"ln_1.weight": {C}, "ln_1.bias": {C}, "ln_2.weight": {C}, "ln_2.bias": {C},
			"attn.c_attn.weight": {C, 3 * C}, "attn.c_attn.bias": {3 * C},
			"attn.c_proj.weight": {C, C}, "attn.c_proj.bias": {C},
			"mlp.c_fc.weight": {C, I}, "mlp.c_fc.bias": {I},
			"mlp.c_proj.weight": {I, C}, "mlp.c_proj.bias": {C},
		} {
			s[p+name] = shape
		}
	}
	return s
}

// rawGPT2Config mirrors config.json with pointers, so that a missing field can be told from zero.
type rawGPT2Config struct {
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

// QuantFormat is the version of the quantized weight layout written by QuantizeGPT2 and
// named in config.json's "quantization.format" (docs/kernels.md).
const QuantFormat = "modelrt-weights/v1"

// LoadGPT2Config reads and validates a Hugging Face GPT-2 config.json. Errors name path and the
// offending field.
func LoadGPT2Config(path string) (GPT2Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return GPT2Config{}, fmt.Errorf("gpt2: read config: %w", err)
	}
	cfg, err := ParseGPT2Config(data)
	if err != nil {
		return GPT2Config{}, fmt.Errorf("gpt2: %s: %w", path, err)
	}
	return cfg, nil
}

// ParseGPT2Config decodes and validates config.json contents; errors name the field.
func ParseGPT2Config(data []byte) (GPT2Config, error) {
	var r rawGPT2Config
	if err := json.Unmarshal(data, &r); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return GPT2Config{}, fmt.Errorf("field %q: %s is not a valid %s", te.Field, te.Value, te.Type)
		}
		return GPT2Config{}, fmt.Errorf("invalid JSON: %w", err)
	}
	var missing []string
	need := func(name string, p *int) int {
		if p == nil {
			missing = append(missing, name)
			return 0
		}
		return *p
	}
	c := GPT2Config{
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
		return GPT2Config{}, fmt.Errorf("missing field %q", missing[0])
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
		return GPT2Config{}, errors.New(`field "scale_attn_weights": false is not supported (scores are always scaled by 1/sqrt(head_dim))`)
	case r.ScaleAttnByInverseLayer != nil && *r.ScaleAttnByInverseLayer:
		return GPT2Config{}, errors.New(`field "scale_attn_by_inverse_layer_idx": true is not supported`)
	case r.ReorderAndUpcastAttn != nil && *r.ReorderAndUpcastAttn:
		return GPT2Config{}, errors.New(`field "reorder_and_upcast_attn": true is not supported`)
	}
	if q := r.Quantization; q != nil {
		if q.Format != QuantFormat {
			return GPT2Config{}, fmt.Errorf(`field "quantization.format": %q is not supported (want %q)`, q.Format, QuantFormat)
		}
		dt, err := quant.ParseDType(q.DType)
		if err != nil {
			return GPT2Config{}, fmt.Errorf(`field "quantization.dtype": %w`, err)
		}
		c.Weights = dt
	}
	if c.Weights == quant.F32 {
		c.Weights = ""
	}
	if err := c.Validate(); err != nil {
		return GPT2Config{}, err
	}
	return c, nil
}

// Validate checks the fields' ranges and consistency; errors name the config.json field.
func (c GPT2Config) Validate() error {
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
