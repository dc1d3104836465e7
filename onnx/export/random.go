package export

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/modelrt/modelrt/sdk/modeldir"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

// RandomWeights returns Weights for a GPT-2 of config cfg without a checkpoint, for benchmarks:
// LayerNorm gains 1, everything else uniform with standard deviation 0.02. Each tensor's values
// depend only on seed and its name, so any request order gives the same model.
func RandomWeights(cfg modeldir.GPT2Config, seed uint64) Weights {
	return randomWeights{shapes: modeldir.GPT2Shapes(cfg), seed: seed}
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
