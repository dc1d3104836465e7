package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const priorTiny = "../../testdata/models/glyph-prior-tiny"

// text2imageRun runs `modelrt text2image --json` and decodes its one JSON object.
func text2imageRun(t *testing.T, args ...string) text2imageJSON {
	t.Helper()
	out, stderr, err := modelrt(t, append([]string{"text2image", "--json"}, args...)...)
	if err != nil {
		t.Fatalf("text2image %v: %v\n%s", args, err, stderr)
	}
	d := json.NewDecoder(strings.NewReader(out))
	var got text2imageJSON
	if err := d.Decode(&got); err != nil {
		t.Fatalf("parse %q: %v", out, err)
	}
	if _, err := d.Token(); err != io.EOF {
		t.Fatalf("stdout holds more than one JSON object: %q", out)
	}
	return got
}

// exportPrior exports the fixture prior for onnxrt and copies its text-to-image files beside.
func exportPrior(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "prior-onnx")
	if _, stderr, err := modelrt(t, "export", "--model", priorTiny, "--out", out, "--with-past"); err != nil {
		t.Fatalf("export: %v\n%s", err, stderr)
	}
	for _, name := range []string{"text2image.json", "codebook.safetensors"} {
		data, err := os.ReadFile(filepath.Join(priorTiny, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestText2ImageNativeAndONNXRuntime: the same caption, seed and settings draw the same codes
// through the native plugin and through onnxrt on the exported prior (the VAE exported too).
func TestText2ImageNativeAndONNXRuntime(t *testing.T) {
	dir := t.TempDir()
	onnx := exportPrior(t)
	args := []string{"--prompt", "the capital letter r, bold serif", "--n", "3", "--seed", "9", "--top-k", "6", "--guidance", "2.5"}
	native := text2imageRun(t, append(args, "--model", priorTiny, "--backend", "native", "--out", filepath.Join(dir, "native"), "--grid", filepath.Join(dir, "grid.png"))...)
	ort := text2imageRun(t, append(args, "--model", onnx, "--vae", "../../testdata/models/vae-tiny-onnx", "--backend", "onnxrt", "--out", filepath.Join(dir, "ort"))...)
	if len(native.Codes) != 3 || len(native.Codes[0]) != 64 {
		t.Fatalf("native drew %d images of %d codes", len(native.Codes), len(native.Codes[0]))
	}
	for i := range native.Codes {
		if !slices.Equal(native.Codes[i], ort.Codes[i]) {
			t.Errorf("image %d: onnxrt codes %v\nnative codes %v", i, ort.Codes[i], native.Codes[i])
		}
	}
	if want := []string{filepath.Join(dir, "native-0.png"), filepath.Join(dir, "native-1.png"), filepath.Join(dir, "native-2.png")}; !slices.Equal(native.Images, want) {
		t.Errorf("images %v, want %v", native.Images, want)
	}
	// "the capital letter R, bold serif" in the fixture's BPE.
	if native.PromptTokens != ort.PromptTokens || native.PromptTokens < 10 {
		t.Errorf("prompt tokens: native %d, onnxrt %d", native.PromptTokens, ort.PromptTokens)
	}
	for i := range 3 {
		a, err := pngPixels(t, native.Images[i])
		if err != nil {
			t.Fatal(err)
		}
		b, err := pngPixels(t, ort.Images[i])
		if err != nil {
			t.Fatal(err)
		}
		if a.Bounds().Dx() != 16 || a.Bounds().Dy() != 16 {
			t.Errorf("image %d is %v, want vae-tiny's 16×16", i, a.Bounds())
		}
		comparePixels(t, "text2image onnxrt vs native", b, a, pixelTol)
	}
	grid, err := pngPixels(t, filepath.Join(dir, "grid.png"))
	if err != nil || grid.Bounds().Dx() != 32 || grid.Bounds().Dy() != 32 {
		t.Errorf("grid: %v, %v (want 2×2 cells of 16 px)", grid.Bounds(), err)
	}
}

func TestText2ImageSizeAndErrors(t *testing.T) {
	dir := t.TempDir()
	big := text2imageRun(t, "--model", priorTiny, "--prompt", "the digit 7", "--size", "64", "--out", filepath.Join(dir, "big"))
	img, err := pngPixels(t, big.Images[0])
	if err != nil || img.Bounds().Dx() != 64 || img.Bounds().Dy() != 64 {
		t.Fatalf("--size 64: %v, %v", img.Bounds(), err)
	}
	small := text2imageRun(t, "--model", priorTiny, "--prompt", "the digit 7", "--out", filepath.Join(dir, "small"))
	if !slices.Equal(big.Codes[0], small.Codes[0]) {
		t.Error("--size changed the codes")
	}
	native, err := pngPixels(t, small.Images[0])
	if err != nil {
		t.Fatal(err)
	}
	for y := range 64 {
		for x := range 64 {
			if !bytes.Equal(img.Pix[img.PixOffset(x, y):][:4], native.Pix[native.PixOffset(x/4, y/4):][:4]) {
				t.Fatalf("--size 64 pixel (%d,%d) is not native pixel (%d,%d)", x, y, x/4, y/4)
			}
		}
	}
	long := "the capital letter A, bold light italic serif sans mono condensed"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--prompt", "  "}, "caption is empty"},
		{[]string{"--prompt", long}, "tokens; the model's prefix holds 24"},
		{[]string{"--prompt", "the letter A", "--n", "0"}, "n 0: want 1 to 10"},
		{[]string{"--prompt", "the letter A", "--n", "11"}, "n 11: want 1 to 10"},
		{[]string{"--prompt", "the letter A", "--size", "24"}, "size 24x24: the model draws 16x16 images"},
		{[]string{"--prompt", "the letter A", "--guidance", "-1"}, "guidance -1"},
		{[]string{"--prompt", "the letter A", "--vae", dir}, "has no config.json or vae_decoder/config.json"},
	} {
		_, stderr, err := modelrt(t, append([]string{"text2image", "--model", priorTiny, "--out", filepath.Join(dir, "x")}, c.args...)...)
		if err == nil || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: err %v, stderr %q; want it to say %q", c.args, err, stderr, c.want)
		}
	}
}
