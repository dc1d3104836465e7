package main

import (
	"path/filepath"
	"slices"
	"testing"
)

// TestDemoModelsOnBothBackends: the demo models that `make run` uses load on both backends —
// natively from examples/models, and on ONNX Runtime after `modelrt export` — and agree: the
// same greedy tokens from gpt2-go, the same reconstructions and prior samples (within a pixel
// level) from vae-glyphs.
func TestDemoModelsOnBothBackends(t *testing.T) {
	const demo = "../../examples/models/"
	t.Run("gpt2-go", func(t *testing.T) {
		out := t.TempDir()
		if _, stderr, err := modelrt(t, "export", "--model", demo+"gpt2-go", "--out", out, "--with-past"); err != nil {
			t.Fatalf("export: %v\n%s", err, stderr)
		}
		args := []string{"--prompt", "func (b *Buffer) Len() int {", "--max-new-tokens", "24"}
		want := generateIDs(t, append([]string{"--model", demo + "gpt2-go", "--backend", "native"}, args...)...)
		got := generateIDs(t, append([]string{"--model", out, "--backend", "onnxrt"}, args...)...)
		if !slices.Equal(got, want) {
			t.Errorf("exported gpt2-go on onnxrt: %v\nnative:                   %v", got, want)
		}
		if len(want) < 24 {
			t.Errorf("native generated %d ids, want the prompt and 24 new tokens", len(want))
		}
	})
	t.Run("vae-glyphs", func(t *testing.T) {
		dir := t.TempDir()
		onnx := filepath.Join(dir, "onnx")
		if _, stderr, err := modelrt(t, "export", "--model", demo+"vae-glyphs", "--out", onnx); err != nil {
			t.Fatalf("export: %v\n%s", err, stderr)
		}
		glyphs := []string{demo + "vae-glyphs/glyphs/00.png", demo + "vae-glyphs/glyphs/07.png"}
		for _, job := range []struct {
			name string
			args []string
		}{
			{"reconstruct", append([]string{"reconstruct"}, append(glyphs, "--mode", "mean")...)},
			{"sample", []string{"sample", "--n", "4", "--seed", "3"}},
		} {
			var imgs [2]string
			for i, m := range []struct{ model, backend string }{{demo + "vae-glyphs", "native"}, {onnx, "onnxrt"}} {
				imgs[i] = filepath.Join(dir, job.name+"-"+m.backend+".png")
				runVAE(t, append(job.args, "--model", m.model, "--backend", m.backend, "--out", imgs[i])...)
			}
			native, err := pngPixels(t, imgs[0])
			if err != nil {
				t.Fatal(err)
			}
			ort, err := pngPixels(t, imgs[1])
			if err != nil {
				t.Fatal(err)
			}
			comparePixels(t, "vae-glyphs "+job.name+", onnxrt vs native", ort, native, pixelTol)
		}
	})
}
