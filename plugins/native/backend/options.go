package backend

import (
	"fmt"

	"github.com/modelrt/modelrt/native/gpt2"
	"github.com/modelrt/modelrt/sdk/modeldir/quant"
)

// weightsOption is the model option (sdk.LoadModelRequest.Options, a pipeline's model block
// `options`) that quantizes a float32 GPT-2 checkpoint as it loads: "int8" or "fp16" ("f32"
// keeps float32). A directory written by `modelrt quantize` needs no option: gpt2.Load detects
// it from config.json.
const weightsOption = "weights"

// kvCacheOption is the model option that sets the storage type of the sessions' KV caches:
// "fp16" or "f32". Without it a model with int8 weights keeps fp16 keys and values (half the
// memory) and every other model float32 (gpt2.Model.SetKVCache).
const kvCacheOption = "kv_cache"

// loadGPT2 loads the GPT-2 directory dir with the load options found in opts.
func loadGPT2(dir string, opts map[string]string) (*gpt2.Model, error) {
	var lo gpt2.LoadOptions
	if v, ok := opts[weightsOption]; ok {
		dt, err := quant.ParseDType(v)
		if err != nil {
			return nil, fmt.Errorf("option %q: %w", weightsOption, err)
		}
		lo.Weights = dt
	}
	if v, ok := opts[kvCacheOption]; ok {
		dt, err := quant.ParseDType(v)
		if err == nil && dt != quant.F32 && dt != quant.F16 {
			err = fmt.Errorf("a KV cache is %s or %s, not %s", quant.F32, quant.F16, dt)
		}
		if err != nil {
			return nil, fmt.Errorf("option %q: %w", kvCacheOption, err)
		}
		lo.KVCache = dt
	}
	return gpt2.LoadWith(dir, lo)
}
