// Package vae drives a VAE that lives in a backend, as runtime/lm drives a causal LM: it loads
// the model with task vae, reads its facts, builds the vae-encode and vae-decode requests and
// checks what comes back against the tensor contract and those facts. The CLI (modelrt vae),
// the pipeline engine's vae stages, the bench and the conformance runner all call it.
package vae

import (
	"context"
	"fmt"

	"github.com/modelrt/modelrt/sdk"
)

// Model is a VAE loaded in a backend, with the facts its ModelInfo reported (0 where the
// backend did not say), its request limits among them.
type Model struct {
	Backend sdk.Backend
	Name    string
	sdk.VAEFacts
}

// Load loads dir into b under name with task vae and reads its facts.
func Load(ctx context.Context, b sdk.Backend, name, dir string, options map[string]string) (*Model, error) {
	r, err := b.LoadModel(ctx, &sdk.LoadModelRequest{Name: name, Path: dir, Task: sdk.TaskVAE, Options: options})
	if err != nil {
		return nil, err
	}
	return FromInfo(b, r.Model)
}

// FromInfo wraps a model already loaded in b, described by info.
func FromInfo(b sdk.Backend, info sdk.ModelInfo) (*Model, error) {
	f, err := sdk.VAEFactsOf(info)
	if err != nil {
		return nil, err
	}
	return &Model{Backend: b, Name: info.Name, VAEFacts: f}, nil
}

// Encode runs vae-encode on image, float32 (N,C,H,W) in [-1,1], and returns mean and logvar,
// float32 (N,L,H/f,W/f). Where the facts are known, C must be the model's input channels, H
// and W multiples of its downsampling factor and within its max_image_size, and the outputs
// must have the shape they imply.
func (m *Model) Encode(ctx context.Context, image *sdk.Tensor) (mean, logvar *sdk.Tensor, err error) {
	if err := m.checkInput(sdk.TaskVAEEncode, "image", image, m.InChannels, "in_channels"); err != nil {
		return nil, nil, err
	}
	if f := int64(m.DownsampleFactor); f > 1 && (image.Shape[2]%f != 0 || image.Shape[3]%f != 0) {
		return nil, nil, fmt.Errorf("model %q: image of %d×%d (W×H): the VAE needs height and width divisible by %d, its downsampling factor (resize it first)",
			m.Name, image.Shape[3], image.Shape[2], f)
	}
	if err := m.checkLimits(sdk.TaskVAEEncode, image); err != nil {
		return nil, nil, err
	}
	want := []int64{image.Shape[0], m.known(m.LatentChannels), div(image.Shape[2], m.DownsampleFactor), div(image.Shape[3], m.DownsampleFactor)}
	outs, err := m.infer(ctx, sdk.TaskVAEEncode, "image", image, want, "mean", "logvar")
	if err != nil {
		return nil, nil, err
	}
	return outs["mean"], outs["logvar"], nil
}

// Decode runs vae-decode on latent, float32 (N,L,h,w), and returns the image, float32
// (N,C,h·f,w·f) in [-1,1]. Where the facts are known, L must be the model's latent channels,
// h·f and w·f within its max_image_size, and the image must have the shape they imply.
func (m *Model) Decode(ctx context.Context, latent *sdk.Tensor) (*sdk.Tensor, error) {
	if err := m.checkInput(sdk.TaskVAEDecode, "latent", latent, m.LatentChannels, "latent_channels"); err != nil {
		return nil, err
	}
	if err := m.checkLimits(sdk.TaskVAEDecode, latent); err != nil {
		return nil, err
	}
	want := []int64{latent.Shape[0], m.known(m.OutChannels), mul(latent.Shape[2], m.DownsampleFactor), mul(latent.Shape[3], m.DownsampleFactor)}
	outs, err := m.infer(ctx, sdk.TaskVAEDecode, "latent", latent, want, "image")
	if err != nil {
		return nil, err
	}
	return outs["image"], nil
}

// checkInput checks that x is a 4-D tensor whose channels are the model's (when it said).
func (m *Model) checkInput(task, name string, x *sdk.Tensor, channels int, fact string) error {
	if len(x.Shape) != 4 {
		return fmt.Errorf("model %q: %s: %s must be (batch, channels, height, width), have shape %v", m.Name, task, name, x.Shape)
	}
	if channels > 0 && x.Shape[1] != int64(channels) {
		return fmt.Errorf("model %q: %s: %s has %d channels, model takes %d (%s)", m.Name, task, name, x.Shape[1], channels, fact)
	}
	return nil
}

// checkLimits makes the backend's own checks of a 4-D image or latent before the request is
// sent (docs/sdk.md, Limits): no dimension below 1, and the image side within the
// max_image_size the backend published. A request the backend would refuse is never sent; the
// error is the same InvalidArgument. (checkInput has checked the channels.)
func (m *Model) checkLimits(task string, x *sdk.Tensor) error {
	in := &sdk.VAEInput{Task: task, N: int(x.Shape[0]), C: int(x.Shape[1]), H: int(x.Shape[2]), W: int(x.Shape[3])}
	if err := sdk.CheckVAE(in, 0, m.DownsampleFactor, m.MaxImageSize); err != nil {
		return fmt.Errorf("model %q (not sent to its backend): %w", m.Name, err)
	}
	return nil
}

// infer runs task on the input name = x and checks that each output is there, float32, and of
// shape want (-1: any size).
func (m *Model) infer(ctx context.Context, task, name string, x *sdk.Tensor, want []int64, outputs ...string) (map[string]*sdk.Tensor, error) {
	r, err := m.Backend.Infer(ctx, &sdk.InferRequest{Model: m.Name, Params: map[string]string{sdk.ParamTask: task},
		Inputs: map[string]*sdk.Tensor{name: x}, Outputs: outputs})
	if err != nil {
		return nil, fmt.Errorf("model %q: %s: %w", m.Name, task, err)
	}
	for _, o := range outputs {
		t, ok := r.Outputs[o]
		switch {
		case !ok:
			return nil, fmt.Errorf("model %q: %s returned no %q (outputs: %s)", m.Name, task, o, sdk.InputNames(r.Outputs))
		case t.DType != sdk.Float32:
			return nil, fmt.Errorf("model %q: %s output %q is %s, want float32", m.Name, task, o, t.DType)
		case !matches(t.Shape, want):
			return nil, fmt.Errorf("model %q: %s output %q has shape %v for %s %v, want %v (-1: any)", m.Name, task, o, t.Shape, name, x.Shape, want)
		}
	}
	return r.Outputs, nil
}

// known returns n, or -1 (any size) when the fact is unknown.
func (m *Model) known(n int) int64 {
	if n <= 0 {
		return -1
	}
	return int64(n)
}

func div(n int64, f int) int64 {
	if f <= 0 {
		return -1
	}
	return n / int64(f)
}

func mul(n int64, f int) int64 {
	if f <= 0 {
		return -1
	}
	return n * int64(f)
}

func matches(shape, want []int64) bool {
	if len(shape) != len(want) {
		return false
	}
	for i, w := range want {
		if shape[i] < 0 || w >= 0 && shape[i] != w {
			return false
		}
	}
	return true
}
