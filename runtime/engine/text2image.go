package engine

import (
	"context"
	"fmt"

	"github.com/zclconf/go-cty/cty"

	"github.com/modelrt/modelrt/pipelines"
	"github.com/modelrt/modelrt/runtime/text2image"
	"github.com/modelrt/modelrt/sdk"
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
	captions, err := stageCaptions(c)
	if err != nil {
		return nil, err
	}
	p := &text2image.Pipeline{Model: m, Prior: lmModel, VAE: vae.backend.plugin, VAEName: vae.Name}
	var all [][]int
	var first string
	for i, caption := range captions {
		res, err := p.Codes(ctx, caption, o)
		if err != nil {
			return nil, fmt.Errorf("model %q: caption %d: %w", prior.Name, i, err)
		}
		if i == 0 {
			first = res.Caption
		}
		all = append(all, res.Codes...)
	}
	img, err := p.DecodeTensor(ctx, all, o.Scale)
	if err != nil {
		return nil, fmt.Errorf("model %q: %w", vae.Name, err)
	}
	codes := make([]cty.Value, len(all))
	for i, row := range all {
		codes[i] = pipelines.TokenIDsVal(row)
	}
	return map[string]cty.Value{"image": imageVal(img), "codes": cty.ListVal(codes), "caption": cty.StringVal(first)}, nil
}

// stageCaptions returns image.generate's caption or captions: exactly one of the two is set.
func stageCaptions(c *stageCall) ([]string, error) {
	one, list := c.args["caption"], c.args["captions"]
	switch {
	case !one.IsNull() && !list.IsNull():
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, "caption and captions are both set; give one")
	case !one.IsNull():
		return []string{one.AsString()}, nil
	case list.IsNull() || list.LengthInt() == 0:
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, "captions: give caption or a non-empty captions list")
	}
	var out []string
	for it := list.ElementIterator(); it.Next(); {
		_, v := it.Element()
		if v.IsNull() {
			return nil, sdk.Errorf(sdk.CodeInvalidArgument, "captions[%d] is null", len(out))
		}
		out = append(out, v.AsString())
	}
	return out, nil
}
