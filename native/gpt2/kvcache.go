package gpt2

import (
	"fmt"

	"github.com/modelrt/modelrt/native/kernels"
	"github.com/modelrt/modelrt/sdk/modeldir/quant"
)

// The KV cache stores keys and values in float32, or in half precision (IEEE fp16, as llama.cpp
// does by default), which halves what a long or batched session holds: 54 MiB instead of 108
// for GPT-2 124M at batch 8 × 192 positions — for an int8 model nearly half its weights. The
// attention reads each half-precision key and value widened to float32 (kernels.AttentionF16);
// queries, scores and sums stay float32. By default a model with int8 weights uses a
// half-precision cache and every other model a float32 one, so that float32 inference keeps
// matching ONNX Runtime; SetKVCache (LoadOptions.KVCache) chooses explicitly.

// SetKVCache sets the storage type of the caches NewCache creates from now on: quant.F32,
// quant.F16, or "" for the default (F16 with int8 weights, else F32). Caches already created
// keep theirs.
func (m *Model) SetKVCache(dt quant.DType) error {
	switch dt {
	case "", quant.F32, quant.F16:
		m.kv = dt
		return nil
	}
	return fmt.Errorf("gpt2: KV cache type %q: want %s or %s", dt, quant.F32, quant.F16)
}

// KVCache returns the storage type of the caches NewCache creates: quant.F32 or quant.F16.
func (m *Model) KVCache() quant.DType {
	if m.halfKV() {
		return quant.F16
	}
	return quant.F32
}

func (m *Model) halfKV() bool {
	if m.kv == "" {
		return m.cfg.Weights == quant.Int8
	}
	return m.kv == quant.F16
}

// put stores one head's key and value (D each) of layer at element offset at of the layer's
// (B,H,S,D) cache.
func (c *Cache) put(layer, at int, key, value []float32) {
	if c.half {
		kernels.NarrowF16(c.k16[layer][at:at+len(key)], key)
		kernels.NarrowF16(c.v16[layer][at:at+len(value)], value)
		return
	}
	copy(c.k[layer][at:at+len(key)], key)
	copy(c.v[layer][at:at+len(value)], value)
}

// attend runs the attention kernel of layer over the cache.
func (c *Cache) attend(layer int, dst, q []float32, mask []int64, s kernels.AttentionShape) {
	if c.half {
		kernels.AttentionF16(dst, q, c.k16[layer], c.v16[layer], mask, s)
		return
	}
	kernels.Attention(dst, q, c.k[layer], c.v[layer], mask, s)
}

// split copies the rows of a fused query‖key‖value projection (s.B·s.T rows of 3·H·D) into q
// and into layer's cache at positions s.P.. (kernels.SplitQKV, on the worker pool, for a float32
// cache; narrowed head by head for a half-precision one).
func (c *Cache) split(layer int, q, qkv []float32, s kernels.AttentionShape) {
	c.populate(layer, s)
	if !c.half {
		kernels.SplitQKV(q, c.k[layer], c.v[layer], qkv, s)
		return
	}
	C, d := s.H*s.D, s.D
	for b := 0; b < s.B; b++ {
		for t := 0; t < s.T; t++ {
			r := qkv[(b*s.T+t)*3*C:][:3*C]
			copy(q[(b*s.T+t)*C:][:C], r[:C])
			for h := 0; h < s.H; h++ {
				at := ((b*s.H+h)*s.S + s.P + t) * d
				c.put(layer, at, r[C+h*d:][:d], r[2*C+h*d:][:d])
			}
		}
	}
}
