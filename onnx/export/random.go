package export

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/modelrt/modelrt/native/gpt2"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

// GPT2Shapes lists the HF GPT2LMHeadModel tensors of a model with config cfg and their shapes
// (Conv1D weights [in,out]; no lm_head.weight, which is tied to wte).
func GPT2Shapes(cfg gpt2.Config) map[string][]int64 {
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

// RandomWeights returns Weights for a GPT-2 of config cfg without a checkpoint, for benchmarks:
// LayerNorm gains 1, everything else uniform with standard deviation 0.02. Each tensor's values
// depend only on seed and its name, so any request order gives the same model.
func RandomWeights(cfg gpt2.Config, seed uint64) Weights {
	return randomWeights{shapes: GPT2Shapes(cfg), seed: seed}
}

type randomWeights struct {
	shapes map[string][]int64
	seed   uint64
}

func (w randomWeights) Tensor(name string) ([]byte, []int64, error) {
	shape, ok := w.shapes[name]
	if !ok {
		return nil, nil, fmt.Errorf("random weights: %q: %w", name, safetensors.ErrNotFound)
	}
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	raw := make([]byte, 4*n)
	if strings.HasSuffix(name, "ln_1.weight") || strings.HasSuffix(name, "ln_2.weight") || strings.HasSuffix(name, "ln_f.weight") {
		for i := int64(0); i < n; i++ {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(1))
		}
		return raw, shape, nil
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	r := rand.New(rand.NewPCG(w.seed, h.Sum64()))
	a := float32(0.02 * math.Sqrt(3)) // uniform on [-a, a] has standard deviation 0.02
	for i := int64(0); i < n; i++ {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(a*(2*r.Float32()-1)))
	}
	return raw, shape, nil
}
