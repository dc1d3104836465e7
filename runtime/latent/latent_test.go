package latent

import (
	"bytes"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/sdk/safetensors"
)

// momentTol bounds |sample mean| and |sample variance − 1| of 200 000 N(0,1) draws (about 20
// standard errors: a wrong distribution, not bad luck, fails it).
const momentTol = 0.02

// sampleTol bounds float32 error of mean + exp(0.5·logvar)·ε recomputed in float64.
const sampleTol = 1e-5

func TestNormalMoments(t *testing.T) {
	z := Normal(200_000, 3)
	var s, s2 float64
	for _, v := range z {
		s += float64(v)
		s2 += float64(v) * float64(v)
	}
	n := float64(len(z))
	mean, variance := s/n, s2/n-(s/n)*(s/n)
	if math.Abs(mean) > momentTol || math.Abs(variance-1) > momentTol {
		t.Errorf("mean %g variance %g, want 0 and 1 within %g", mean, variance, momentTol)
	}
	if !slices.Equal(Normal(10, 3), z[:10]) {
		t.Errorf("same seed, different draws")
	}
	if slices.Equal(Normal(10, 4), z[:10]) {
		t.Errorf("seeds 3 and 4 give the same draws")
	}
}

func TestSample(t *testing.T) {
	mean := []float32{0, 1, -2, 5}
	logvar := []float32{0, -30, 2, float32(math.Log(0.25))}
	z := Sample(mean, logvar, 9)
	eps := Normal(4, 9)
	for i := range z {
		want := float64(mean[i]) + math.Exp(0.5*float64(logvar[i]))*float64(eps[i])
		if d := math.Abs(float64(z[i]) - want); d > sampleTol {
			t.Errorf("z[%d] = %g, want %g (abs err %g)", i, z[i], want, d)
		}
	}
	zz := slices.Clone(z)
	Scale(zz, 0.18215)
	Unscale(zz, 0.18215)
	for i := range z {
		if d := math.Abs(float64(zz[i] - z[i])); d > sampleTol {
			t.Errorf("scale round trip [%d]: %g → %g", i, z[i], zz[i])
		}
	}
}

func TestFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "z.safetensors")
	in := &File{Shape: [4]int{1, 2, 1, 3}, Latent: []float32{1, 2, 3, 4, 5, 6}, Mean: []float32{0, 0, 0, 1, 1, 1},
		Logvar: []float32{-1, -1, -1, -2, -2, -2}, Scaled: true, ScalingFactor: 0.5, Mode: "sample", Seed: 42}
	if err := Save(path, in); err != nil {
		t.Fatal(err)
	}
	out, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if out.Shape != in.Shape || !slices.Equal(out.Latent, in.Latent) || !slices.Equal(out.Mean, in.Mean) ||
		!slices.Equal(out.Logvar, in.Logvar) || !out.Scaled || out.ScalingFactor != 0.5 || out.Mode != "sample" || out.Seed != 42 {
		t.Errorf("round trip: %+v\nwant %+v", out, in)
	}
	if got := out.Decodable(); !slices.Equal(got, []float32{2, 4, 6, 8, 10, 12}) || out.Latent[0] != 1 {
		t.Errorf("Decodable = %v (latent now %v)", got, out.Latent)
	}
}

func writeRaw(t *testing.T, ts []safetensors.Tensor, meta map[string]string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "x.safetensors")
	if err := safetensors.WriteFile(path, ts, meta); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestForeignFile: a file with one 4-D tensor of another name and no metadata loads unscaled.
func TestForeignFile(t *testing.T) {
	p := writeRaw(t, []safetensors.Tensor{{Name: "z", DType: safetensors.F16, Shape: []int{1, 1, 1, 2}, F32: []float32{0.5, -1}}}, nil)
	f, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if f.Scaled || !slices.Equal(f.Latent, []float32{0.5, -1}) {
		t.Errorf("%+v", f)
	}
}

func TestLoadErrors(t *testing.T) {
	four := []int{1, 1, 1, 2}
	ok := safetensors.Tensor{Name: "latent", DType: safetensors.F32, Shape: four, F32: []float32{1, 2}}
	cases := []struct {
		name string
		ts   []safetensors.Tensor
		meta map[string]string
		want string
	}{
		{"rank 3", []safetensors.Tensor{{Name: "latent", DType: safetensors.F32, Shape: []int{1, 1, 2}, F32: []float32{1, 2}}}, nil, "shape [1 1 2]"},
		{"two unnamed", []safetensors.Tensor{{Name: "a", DType: safetensors.F32, Shape: four, F32: []float32{1, 2}}, {Name: "b", DType: safetensors.F32, Shape: four, F32: []float32{1, 2}}}, nil, `no tensor "latent"`},
		{"nan", []safetensors.Tensor{{Name: "latent", DType: safetensors.F32, Shape: four, F32: []float32{1, float32(math.NaN())}}}, nil, "index 1"},
		{"int", []safetensors.Tensor{{Name: "latent", DType: safetensors.I64, Shape: four, I64: []int64{1, 2}}}, nil, `"latent"`},
		{"mean shape", []safetensors.Tensor{ok, {Name: "mean", DType: safetensors.F32, Shape: []int{1, 2, 1, 1}, F32: []float32{1, 2}}}, nil, `"mean" has shape [1 2 1 1]`},
		{"scaled without factor", []safetensors.Tensor{ok}, map[string]string{"scaled": "true"}, "scaling_factor"},
		{"bad factor", []safetensors.Tensor{ok}, map[string]string{"scaling_factor": "0"}, "scaling_factor"},
		{"bad seed", []safetensors.Tensor{ok}, map[string]string{"seed": "-1"}, "seed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := writeRaw(t, tc.ts, tc.meta)
			_, err := Load(p)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Errorf("err = %v; want ErrInvalid naming %s and %q", err, p, tc.want)
			}
		})
	}
}

// FuzzLoad: arbitrary bytes either parse to a consistent File or fail with an error; nothing
// panics.
func FuzzLoad(f *testing.F) {
	var buf bytes.Buffer
	safetensors.Write(&buf, []safetensors.Tensor{
		{Name: "latent", DType: safetensors.F32, Shape: []int{1, 1, 1, 2}, F32: []float32{1, 2}},
		{Name: "mean", DType: safetensors.F32, Shape: []int{1, 1, 1, 2}, F32: []float32{1, 2}},
	}, map[string]string{"format": Format, "scaled": "true", "scaling_factor": "0.5", "seed": "3"})
	f.Add(buf.Bytes())
	f.Add([]byte("\x10\x00\x00\x00\x00\x00\x00\x00{}              "))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := safetensors.FromBytes("fuzz", data)
		if err != nil {
			return
		}
		lf, err := fromSafetensors(st)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		n := lf.Shape[0] * lf.Shape[1] * lf.Shape[2] * lf.Shape[3]
		if len(lf.Latent) != n || lf.Mean != nil && len(lf.Mean) != n || lf.Scaled && lf.ScalingFactor == 0 {
			t.Fatalf("inconsistent file %+v", lf)
		}
		lf.Decodable()
	})
}
