// Package latent is the host side of a VAE's latent space: sampling z from the diagonal Gaussian
// an encoder returns, sampling from the prior, the scaling factor, and latent files.
//
// Randomness is the host's, not the backend's, so that every backend given the same seed decodes
// the same z: ε is a stream of math/rand/v2 NormFloat64 draws from PCG(seed, Stream), taken in
// NCHW order.
//
// A latent file is safetensors (docs/vae.md): tensor "latent" float32 (B,L,h,w) — the latent to
// decode — and optionally "mean" and "logvar" of the same shape; metadata "format" =
// "modelrt-latent/v1", "scaled" ("true" when "latent" was multiplied by "scaling_factor"),
// "scaling_factor", "mode" ("sample" or "mean") and "seed".
package latent

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/modelrt/modelrt/sdk/safetensors"
)

// Stream is the PCG stream (second seed word) of every ε draw; fixed so that a seed means the
// same noise in every release.
const Stream = 0x6c6174656e74 // "latent"

// Format is the metadata "format" of latent files.
const Format = "modelrt-latent/v1"

// ErrInvalid marks a latent file or tensor that cannot be used.
var ErrInvalid = errors.New("latent: invalid latent")

// Normal returns n draws of N(0,1) from PCG(seed, Stream).
func Normal(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, Stream))
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(r.NormFloat64())
	}
	return out
}

// Sample draws z = mean + exp(0.5·logvar)·ε with ε = Normal(len(mean), seed).
// Panics if mean and logvar differ in length.
func Sample(mean, logvar []float32, seed uint64) []float32 {
	if len(mean) != len(logvar) {
		panic(fmt.Sprintf("latent: mean has %d values, logvar %d", len(mean), len(logvar)))
	}
	z := Normal(len(mean), seed)
	for i, e := range z {
		z[i] = mean[i] + float32(math.Exp(0.5*float64(logvar[i])))*e
	}
	return z
}

// Scale multiplies z by factor in place (diffusers: latents = sample · scaling_factor, the form a
// diffusion model sees).
func Scale(z []float32, factor float32) {
	for i := range z {
		z[i] *= factor
	}
}

// Unscale divides z by factor in place (the inverse of Scale, applied before decoding).
// Panics on a zero factor.
func Unscale(z []float32, factor float32) {
	if factor == 0 {
		panic("latent: zero scaling factor")
	}
	for i := range z {
		z[i] /= factor
	}
}

// File is the content of a latent file.
type File struct {
	Shape  [4]int    // (B,L,h,w)
	Latent []float32 // the latent to decode
	// Mean and Logvar are the encoder's output when the latent came from an image (else nil).
	Mean, Logvar []float32
	// Scaled: Latent was multiplied by ScalingFactor.
	Scaled        bool
	ScalingFactor float32
	Mode          string // "sample", "mean" or "prior"; informational
	Seed          uint64
}

// Save writes f to path.
func Save(path string, f *File) error {
	n := f.Shape[0] * f.Shape[1] * f.Shape[2] * f.Shape[3]
	shape := f.Shape[:]
	ts := []safetensors.Tensor{{Name: "latent", DType: safetensors.F32, Shape: shape, F32: f.Latent}}
	for _, t := range []struct {
		name string
		v    []float32
	}{{"mean", f.Mean}, {"logvar", f.Logvar}} {
		if t.v != nil {
			ts = append(ts, safetensors.Tensor{Name: t.name, DType: safetensors.F32, Shape: shape, F32: t.v})
		}
	}
	if len(f.Latent) != n {
		return fmt.Errorf("%w: latent has %d values, shape %v needs %d", ErrInvalid, len(f.Latent), f.Shape, n)
	}
	meta := map[string]string{
		"format": Format, "scaled": strconv.FormatBool(f.Scaled),
		"scaling_factor": strconv.FormatFloat(float64(f.ScalingFactor), 'g', -1, 32),
		"mode":           f.Mode, "seed": strconv.FormatUint(f.Seed, 10),
	}
	if err := safetensors.WriteFile(path, ts, meta); err != nil {
		return fmt.Errorf("latent: %w", err)
	}
	return nil
}

// Load reads a latent file. Files written elsewhere need only a 4-D float tensor "latent" (or a
// single 4-D float tensor of any name); without metadata the latent counts as unscaled.
func Load(path string) (*File, error) {
	st, err := safetensors.Open(path)
	if err != nil {
		return nil, fmt.Errorf("latent: %w", err)
	}
	defer st.Close()
	f, err := fromSafetensors(st)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

func fromSafetensors(st *safetensors.File) (*File, error) {
	name := "latent"
	if !st.Has(name) {
		names := st.Names()
		if len(names) != 1 {
			return nil, fmt.Errorf("%w: no tensor \"latent\" (tensors: %v)", ErrInvalid, names)
		}
		name = names[0]
	}
	f := &File{}
	var err error
	if f.Latent, f.Shape, err = read4D(st, name); err != nil {
		return nil, err
	}
	for _, t := range []struct {
		name string
		dst  *[]float32
	}{{"mean", &f.Mean}, {"logvar", &f.Logvar}} {
		if !st.Has(t.name) || name != "latent" {
			continue
		}
		v, s, err := read4D(st, t.name)
		if err != nil {
			return nil, err
		}
		if s != f.Shape {
			return nil, fmt.Errorf("%w: tensor %q has shape %v, latent %v", ErrInvalid, t.name, s, f.Shape)
		}
		*t.dst = v
	}
	meta := st.Metadata()
	f.Mode, f.ScalingFactor = meta["mode"], 0
	if s, ok := meta["scaled"]; ok {
		if f.Scaled, err = strconv.ParseBool(s); err != nil {
			return nil, fmt.Errorf("%w: metadata scaled = %q is not a boolean", ErrInvalid, s)
		}
	}
	if s, ok := meta["scaling_factor"]; ok {
		v, err := strconv.ParseFloat(s, 32)
		if err != nil || v == 0 || math.IsInf(v, 0) || math.IsNaN(v) {
			return nil, fmt.Errorf("%w: metadata scaling_factor = %q is not a non-zero number", ErrInvalid, s)
		}
		f.ScalingFactor = float32(v)
	}
	if f.Scaled && f.ScalingFactor == 0 {
		return nil, fmt.Errorf("%w: metadata says scaled but gives no scaling_factor", ErrInvalid)
	}
	if s, ok := meta["seed"]; ok {
		if f.Seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			return nil, fmt.Errorf("%w: metadata seed = %q is not an unsigned integer", ErrInvalid, s)
		}
	}
	return f, nil
}

func read4D(st *safetensors.File, name string) ([]float32, [4]int, error) {
	v, s, err := st.Float32(name)
	if err != nil {
		return nil, [4]int{}, fmt.Errorf("%w: tensor %q: %w", ErrInvalid, name, err)
	}
	if len(s) != 4 || slices.Contains(s, 0) {
		return nil, [4]int{}, fmt.Errorf("%w: tensor %q has shape %v, want (batch, channels, height, width)", ErrInvalid, name, s)
	}
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, [4]int{}, fmt.Errorf("%w: tensor %q holds %v at index %d", ErrInvalid, name, x, i)
		}
	}
	return v, [4]int{s[0], s[1], s[2], s[3]}, nil
}

// Decodable returns the latent to hand to a VAE decoder: a copy of Latent, divided by the
// scaling factor when the file says it was scaled.
func (f *File) Decodable() []float32 {
	z := slices.Clone(f.Latent)
	if f.Scaled {
		Unscale(z, f.ScalingFactor)
	}
	return z
}
