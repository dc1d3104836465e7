package engine

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/zclconf/go-cty/cty"

	"github.com/modelrt/modelrt/runtime/imageio"
	"github.com/modelrt/modelrt/runtime/latent"
	"github.com/modelrt/modelrt/sdk"
)

func randomSeed() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:]) >> 1
}

func runImageLoad(_ context.Context, c *stageCall) (map[string]cty.Value, error) {
	img, err := imageio.Load(c.str("path"))
	if err != nil {
		return nil, err
	}
	b := img.Bounds()
	data, err := imageio.ToTensor(nil, img, 3)
	if err != nil {
		return nil, err
	}
	return map[string]cty.Value{"image": imageVal(sdk.FromFloat32([]int64{1, 3, int64(b.Dy()), int64(b.Dx())}, data))}, nil
}

func runImageSave(_ context.Context, c *stageCall) (map[string]cty.Value, error) {
	t, err := c.tensor("image")
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cols := imageio.OneRow
	if n, ok := c.integer("columns"); ok {
		cols = int(n)
	}
	img, err := imageio.FromBatch(t, cols)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	path := c.str("path")
	if err := imageio.SavePNG(path, img); err != nil {
		return nil, err
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return map[string]cty.Value{"path": cty.StringVal(path)}, nil
}

func runLatentSample(_ context.Context, c *stageCall) (map[string]cty.Value, error) {
	m, err := c.vaeModel("model")
	if err != nil {
		return nil, err
	}
	scale := 1.0
	if c.args["apply_scaling_factor"].True() {
		if m.ScalingFactor == 0 {
			return nil, fmt.Errorf("apply_scaling_factor: model %q reports no scaling_factor", m.Name)
		}
		scale = float64(m.ScalingFactor)
	}
	seed := randomSeed()
	if n, ok := c.integer("seed"); ok {
		seed = uint64(n)
	}
	var z *sdk.Tensor
	if v := c.args["shape"]; !v.IsNull() {
		var shape []int64
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			n, _ := intVal(e)
			shape = append(shape, n)
		}
		if ch := m.LatentChannels; ch > 0 && len(shape) == 4 && shape[1] != int64(ch) {
			return nil, fmt.Errorf("shape %v: model %q has %d latent channels", shape, m.Name, ch)
		}
		n, err := sdk.NumElements(shape, 4)
		if err != nil {
			return nil, fmt.Errorf("shape %v: %w", shape, err)
		}
		eps := latent.Normal(int(n), seed)
		if scale != 1 {
			latent.Unscale(eps, float32(scale))
		}
		z = sdk.FromFloat32(shape, eps)
	} else {
		mean, merr := c.tensor("mean")
		if merr != nil {
			return nil, fmt.Errorf("mean: %w", merr)
		}
		logvar, lerr := c.tensor("logvar")
		if lerr != nil {
			return nil, fmt.Errorf("logvar: %w", lerr)
		}
		mv, merr := mean.Float32s()
		lv, lerr := logvar.Float32s()
		if merr != nil || lerr != nil || !slices.Equal(mean.Shape, logvar.Shape) {
			return nil, fmt.Errorf("mean %s%v and logvar %s%v: want float32 tensors of one shape", mean.DType, mean.Shape, logvar.DType, logvar.Shape)
		}
		zv := latent.Sample(mv, lv, seed)
		if scale != 1 {
			latent.Scale(zv, float32(scale))
		}
		z = sdk.FromFloat32(slices.Clone(mean.Shape), zv)
	}
	return map[string]cty.Value{"latent": tensorVal(z)}, nil
}

// Rec. 601 luma weights, those of Go's color.GrayModel, for an RGB image given to a 1-channel
// VAE. The [-1,1] mapping is affine and the weights sum to 1, so they apply to tensor values
// directly.
const lumaR, lumaG, lumaB = 0.299, 0.587, 0.114

// matchChannels adapts an image tensor (1,C,H,W) to a model's input channels: RGB to luminance
// for a 1-channel model, gray replicated for a 3-channel one. Other mismatches are errors.
func matchChannels(t *sdk.Tensor, want int) (*sdk.Tensor, error) {
	if len(t.Shape) != 4 || want <= 0 || t.Shape[1] == int64(want) {
		return t, nil
	}
	v, err := t.Float32s()
	if err != nil {
		return nil, err
	}
	b, c, hw := int(t.Shape[0]), int(t.Shape[1]), int(t.Shape[2]*t.Shape[3])
	out := make([]float32, b*want*hw)
	switch {
	case c == 3 && want == 1:
		for i := range b {
			r, g, bl := v[(i*3)*hw:], v[(i*3+1)*hw:], v[(i*3+2)*hw:]
			for j := range hw {
				out[i*hw+j] = lumaR*r[j] + lumaG*g[j] + lumaB*bl[j]
			}
		}
	case c == 1 && want == 3:
		for i := range b {
			for k := range 3 {
				copy(out[(i*3+k)*hw:(i*3+k+1)*hw], v[i*hw:(i+1)*hw])
			}
		}
	default:
		return nil, fmt.Errorf("image has %d channels, the model wants %d", c, want)
	}
	return sdk.FromFloat32([]int64{int64(b), int64(want), t.Shape[2], t.Shape[3]}, out), nil
}
