// Package vae is diffusers' AutoencoderKL (the Stable Diffusion VAE) on the native kernels:
// it loads a diffusers model directory (config.json and diffusion_pytorch_model.safetensors with
// diffusers parameter names), encodes images in [-1,1] to the diagonal Gaussian's mean and
// logvar, and decodes latents back to images.
//
// The model is a tree of small structs (encoder → down blocks → resnets, …), each with its own
// Forward over NCHW float32 activations; the math follows diffusers exactly, including the
// (0,1,0,1) pad before each stride-2 conv and GroupNorm eps 1e-6. Sampling z from mean and
// logvar, and the scaling factor, are left to the caller (Config().ScalingFactor).
package vae

import (
	"context"
	"errors"
	"fmt"
)

// Sentinel errors; returned errors wrap one of them.
var (
	// ErrInvalidInput marks an image or latent whose shape the model cannot take.
	ErrInvalidInput = errors.New("vae: invalid input")
	// ErrMissingWeights marks an absent weights file or tensor.
	ErrMissingWeights = errors.New("vae: missing weights")
	// ErrInvalidWeights marks a tensor of the wrong shape or with non-finite values.
	ErrInvalidWeights = errors.New("vae: invalid weights")
)

// Model is an AutoencoderKL with its weights. It is safe for concurrent use: Forward passes
// only read the weights.
type Model struct {
	cfg       Config
	enc       encoder
	dec       decoder
	quant     *conv2d // quant_conv, 1×1 over 2L channels; nil when use_quant_conv is false
	postQuant *conv2d // post_quant_conv, 1×1 over L channels
	acts      actPool // activations kept between passes
}

// Config returns the model's configuration.
func (m *Model) Config() Config { return m.cfg }

// Encode runs the encoder and quant_conv on img and splits the result into the diagonal
// Gaussian's parameters. img: (B,C,H,W) with C = InChannels and H, W multiples of the
// downsampling factor f; mean, logvar: (B,L,H/f,W/f) with logvar clamped to [-30, 20].
func (m *Model) Encode(img []float32, b, c, h, w int) (mean, logvar []float32, err error) {
	return m.EncodeContext(context.Background(), img, b, c, h, w)
}

// EncodeContext is Encode that stops between the network's steps (each resnet, attention and
// downsampling conv) once ctx ends, and then returns ctx's error.
func (m *Model) EncodeContext(ctx context.Context, img []float32, b, c, h, w int) (mean, logvar []float32, err error) {
	f := m.cfg.DownsampleFactor()
	switch {
	case b <= 0 || c <= 0 || h <= 0 || w <= 0:
		return nil, nil, fmt.Errorf("%w: image shape [%d,%d,%d,%d] has a non-positive dimension", ErrInvalidInput, b, c, h, w)
	case c != m.cfg.InChannels:
		return nil, nil, fmt.Errorf("%w: image has %d channels, model takes %d (in_channels)", ErrInvalidInput, c, m.cfg.InChannels)
	case h%f != 0 || w%f != 0:
		return nil, nil, fmt.Errorf("%w: image is %d×%d (H×W); both must be multiples of the downsampling factor %d", ErrInvalidInput, h, w, f)
	case len(img) != b*c*h*w:
		return nil, nil, fmt.Errorf("%w: image has %d values, shape [%d,%d,%d,%d] needs %d", ErrInvalidInput, len(img), b, c, h, w, b*c*h*w)
	}
	p := &pass{ctx: ctx, shared: &m.acts}
	x, err := m.enc.Forward(p, tensor{data: img, b: b, c: c, h: h, w: w})
	p.finish()
	if err != nil {
		return nil, nil, err
	}
	if m.quant != nil {
		x = m.quant.Forward(nil, x)
	}
	l := m.cfg.LatentChannels
	plane := l * x.h * x.w
	mean = make([]float32, b*plane)
	logvar = make([]float32, b*plane)
	for i := 0; i < b; i++ {
		moments := x.data[i*2*plane : (i+1)*2*plane]
		copy(mean[i*plane:], moments[:plane])
		lv := logvar[i*plane : (i+1)*plane]
		for j, v := range moments[plane:] {
			lv[j] = min(max(v, -30), 20)
		}
	}
	return mean, logvar, nil
}

// Decode runs post_quant_conv and the decoder. latent: (B,L,h,w) with L = LatentChannels
// (already divided by the scaling factor, if the caller scaled it); result: (B,OutChannels,h·f,w·f).
func (m *Model) Decode(latent []float32, b, l, h, w int) ([]float32, error) {
	return m.DecodeContext(context.Background(), latent, b, l, h, w)
}

// DecodeContext is Decode that stops between the network's steps (each resnet, attention and
// upsampling conv) once ctx ends, and then returns ctx's error.
func (m *Model) DecodeContext(ctx context.Context, latent []float32, b, l, h, w int) ([]float32, error) {
	switch {
	case b <= 0 || l <= 0 || h <= 0 || w <= 0:
		return nil, fmt.Errorf("%w: latent shape [%d,%d,%d,%d] has a non-positive dimension", ErrInvalidInput, b, l, h, w)
	case l != m.cfg.LatentChannels:
		return nil, fmt.Errorf("%w: latent has %d channels, model takes %d (latent_channels)", ErrInvalidInput, l, m.cfg.LatentChannels)
	case len(latent) != b*l*h*w:
		return nil, fmt.Errorf("%w: latent has %d values, shape [%d,%d,%d,%d] needs %d", ErrInvalidInput, len(latent), b, l, h, w, b*l*h*w)
	}
	z := tensor{data: latent, b: b, c: l, h: h, w: w}
	if m.postQuant != nil {
		z = m.postQuant.Forward(nil, z)
	}
	p := &pass{ctx: ctx, shared: &m.acts}
	x, err := m.dec.Forward(p, z)
	p.finish()
	if err != nil {
		return nil, err
	}
	return x.data, nil
}
