package pipelines

import "github.com/zclconf/go-cty/cty"

// Codes is the type of image.generate's codes: one list of codebook indices per image.
var Codes = cty.List(TokenIDs)

// imageGenerateStage is caption → images with a text-to-image prior (docs/text2image.md).
func imageGenerateStage() *StageType {
	return &StageType{
		Name: "image.generate",
		Description: "Draws images from a caption: a GPT-2 prior (a causal-lm model whose directory holds text2image.json and a " +
			"codebook) samples VAE codebook codes on the host, with classifier-free guidance; the codes' vectors make the " +
			"latent that the VAE decodes (docs/text2image.md). Image r uses seed + r.",
		Inputs: []Param{
			{Name: "prior", Type: ModelRef, Required: true, Tasks: []string{TaskCausalLM}, Description: "the text-to-image prior"},
			{Name: "vae", Type: ModelRef, Required: true, Tasks: []string{TaskVAE},
				Description: "the VAE whose codebook the prior draws (its latent_channels must match the codebook)"},
			{Name: "caption", Type: cty.String, Description: "caption, normalised as in docs/text2image.md (this or captions)"},
			{Name: "captions", Type: cty.List(cty.String),
				Description: "several captions, n images each, in one batch caption by caption (this or caption)"},
			{Name: "n", Type: cty.Number, Default: cty.NumberIntVal(1), Whole: true, Min: num(1), Max: num(10),
				Description: "number of images per caption"},
			{Name: "size", Type: cty.Number, Whole: true, Min: num(1),
				Description: "output side in pixels: the native size or a whole multiple (nearest neighbour); unset = native"},
		},
		Blocks: []BlockParam{{
			Name:        "sampling",
			Description: "how codes are drawn; absent means the defaults below with a different draw on each run",
			Params: []Param{
				{Name: "temperature", Type: cty.Number, Default: cty.NumberFloatVal(1), Min: num(0),
					Description: "logits are divided by it; 0 means greedy"},
				{Name: "top_k", Type: cty.Number, Default: cty.NumberIntVal(0), Whole: true, Min: num(0),
					Description: "keep the k most likely codes; 0 disables"},
				{Name: "guidance", Type: cty.Number, Default: cty.NumberFloatVal(2), Min: num(0),
					Description: "classifier-free guidance scale; 1 = the conditional prior alone"},
				{Name: "seed", Type: cty.Number, Whole: true, Min: num(0),
					Description: "random seed of image 0; unset means a different draw on each run"},
			},
		}},
		Outputs: []Param{
			{Name: "image", Type: Image, Description: "the images, (captions·n,C,H,W); image.save writes several as one row, or a grid with columns = n"},
			{Name: "codes", Type: Codes, Description: "per image, its H·W codes in raster order"},
			{Name: "caption", Type: cty.String, Description: "the normalised caption (the first, with captions)"},
		},
	}
}
