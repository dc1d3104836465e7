package engine

import (
	"context"
	"fmt"

	"github.com/zclconf/go-cty/cty"

	"github.com/modelrt/modelrt/pipelines"
	"github.com/modelrt/modelrt/runtime/text2image"
)

// image.generate registers here rather than in stageImpls' literal, so that this stage's code
// stays in this file.
func init() { stageImpls["image.generate"] = runImageGenerate }

// runImageGenerate draws images from a caption with a text-to-image prior and its VAE, each
// in the backend its model block names (docs/text2image.md).
func runImageGenerate(ctx context.Context, c *stageCall) (map[string]cty.Value, error) {
	prior, err := c.model("prior")
	if err != nil {
		return nil, err
	}
	vae, err := c.model("vae")
	if err != nil {
		return nil, err
	}
	m, err := text2image.Load(prior.Path, vae.Path)
	if err != nil {
		return nil, fmt.Errorf("model %q: %w", prior.Name, err)
	}
	lmModel := prior.lm
	if lmModel == nil {
		return nil, fmt.Errorf("model %q is a %s model; the prior must be a causal-lm", prior.Name, prior.Task)
	}
	o := text2image.DefaultOptions()
	if n, ok := c.integer("n"); ok {
		o.N = int(n)
	}
	if px, ok := c.integer("size"); ok {
		if o.Scale, err = m.ScaleFor(int(px), int(px)); err != nil {
			return nil, err
		}
	}
	o.Seed = randomSeed()
	if v := c.args["sampling"]; !v.IsNull() {
		if f, ok := floatVal(v.GetAttr("temperature")); ok {
			o.Temperature = f
		}
		if n, ok := intVal(v.GetAttr("top_k")); ok {
			o.TopK = int(n)
		}
		if f, ok := floatVal(v.GetAttr("guidance")); ok {
			o.Guidance = f
		}
		if n, ok := intVal(v.GetAttr("seed")); ok {
			o.Seed = uint64(n)
		}
	}
	p := &text2image.Pipeline{Model: m, Prior: lmModel, VAE: vae.backend.plugin, VAEName: vae.Name}
	res, err := p.Codes(ctx, c.str("caption"), o)
	if err != nil {
		return nil, fmt.Errorf("model %q: %w", prior.Name, err)
	}
	img, err := p.DecodeTensor(ctx, res.Codes, o.Scale)
	if err != nil {
		return nil, fmt.Errorf("model %q: %w", vae.Name, err)
	}
	codes := make([]cty.Value, len(res.Codes))
	for i, row := range res.Codes {
		codes[i] = pipelines.TokenIDsVal(row)
	}
	return map[string]cty.Value{"image": imageVal(img), "codes": cty.ListVal(codes), "caption": cty.StringVal(res.Caption)}, nil
}
