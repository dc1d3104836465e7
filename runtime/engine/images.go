package engine

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/zclconf/go-cty/cty"

	"github.com/modelrt/modelrt/sdk"
)

// ErrNoImages: the engine was built without image or latent support.
var ErrNoImages = errors.New("engine: image and latent stages are not available")

// Images reads and writes the images of image.load and image.save as float32 (1,C,H,W)
// tensors with values in [-1,1], the VAE's convention.
type Images interface {
	Load(path string) (*sdk.Tensor, error)
	Save(path string, img *sdk.Tensor) error
}

// Latents draws the latents of latent.sample with a seeded ε ~ N(0, I).
type Latents interface {
	// Prior returns ε of the given shape, divided by scale (1 for no scaling).
	Prior(shape []int64, seed uint64, scale float64) (*sdk.Tensor, error)
	// Posterior returns (mean + exp(½·logvar)·ε)·scale.
	Posterior(mean, logvar *sdk.Tensor, seed uint64, scale float64) (*sdk.Tensor, error)
}

var (
	images  Images
	latents Latents
)

func randomSeed() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:]) >> 1
}

func runImageLoad(_ context.Context, c *stageCall) (map[string]cty.Value, error) {
	if images == nil {
		return nil, ErrNoImages
	}
	img, err := images.Load(c.str("path"))
	if err != nil {
		return nil, err
	}
	return map[string]cty.Value{"image": imageVal(img)}, nil
}

func runImageSave(_ context.Context, c *stageCall) (map[string]cty.Value, error) {
	if images == nil {
		return nil, ErrNoImages
	}
	img, err := c.tensor("image")
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	path := c.str("path")
	if err := images.Save(path, img); err != nil {
		return nil, err
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return map[string]cty.Value{"path": cty.StringVal(path)}, nil
}

func runLatentSample(_ context.Context, c *stageCall) (map[string]cty.Value, error) {
	if latents == nil {
		return nil, ErrNoImages
	}
	m, err := c.model("model")
	if err != nil {
		return nil, err
	}
	scale := 1.0
	if c.args["apply_scaling_factor"].True() {
		s, ok, err := m.metaFloat("scaling_factor")
		if err != nil {
			return nil, err
		}
		if !ok || s == 0 {
			return nil, fmt.Errorf("apply_scaling_factor: model %q reports no scaling_factor", m.Name)
		}
		scale = s
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
		if ch, ok, _ := m.metaInt("latent_channels"); ok && len(shape) == 4 && shape[1] != int64(ch) {
			return nil, fmt.Errorf("shape %v: model %q has %d latent channels", shape, m.Name, ch)
		}
		z, err = latents.Prior(shape, seed, scale)
	} else {
		mean, merr := c.tensor("mean")
		if merr != nil {
			return nil, fmt.Errorf("mean: %w", merr)
		}
		logvar, lerr := c.tensor("logvar")
		if lerr != nil {
			return nil, fmt.Errorf("logvar: %w", lerr)
		}
		z, err = latents.Posterior(mean, logvar, seed, scale)
	}
	if err != nil {
		return nil, err
	}
	return map[string]cty.Value{"latent": tensorVal(z)}, nil
}
