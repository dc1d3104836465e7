package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func fixturePriorVars(t *testing.T) []string {
	t.Helper()
	prior, err := filepath.Abs(priorTiny)
	if err != nil {
		t.Fatal(err)
	}
	return []string{"-var", "prior_dir=" + prior, "-var", "vae_dir=" + filepath.Join(filepath.Dir(prior), "vae-tiny")}
}

// TestExampleTextToImage runs the caption → image example on the fixture prior: the stage's
// codes are those `modelrt text2image` draws for the same caption, seed and guidance.
func TestExampleTextToImage(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "row.png")
	args := append(fixturePriorVars(t), "--input", "caption=The letter  k", "--input", "n=3", "--input", "seed=5", "--input", "out="+out)
	r := runJSONOut(t, append([]string{examples + "text-to-image"}, args...)...)
	if r.Outputs["caption"] != "the letter k" || r.Outputs["image"] != out {
		t.Errorf("outputs %v", r.Outputs)
	}
	checkPNG(t, out, 3*16, 16)
	codes, _ := r.Outputs["codes"].([]any)
	if len(codes) != 3 {
		t.Fatalf("codes %v", r.Outputs["codes"])
	}
	cli := text2imageRun(t, "--model", priorTiny, "--prompt", "The letter  k", "--n", "3", "--seed", "5", "--guidance", "2",
		"--out", filepath.Join(dir, "cli"))
	for i, row := range codes {
		var got []int
		for _, c := range row.([]any) {
			got = append(got, int(c.(float64)))
		}
		if !slices.Equal(got, cli.Codes[i]) {
			t.Errorf("image %d: pipeline codes %v\nCLI codes %v", i, got, cli.Codes[i])
		}
	}
}

// TestDefaultPipelineGrid runs the default example's image half on the fixture prior: four
// captions, n images each, saved as one grid whose rows are the captions.
func TestDefaultPipelineGrid(t *testing.T) {
	out := filepath.Join(t.TempDir(), "grid.png")
	args := append(fixturePriorVars(t), "--input", "grid="+out)
	r := runJSONOut(t, append([]string{examples + "default"}, args...)...)
	if r.Outputs["images"] != out {
		t.Errorf("outputs %v", r.Outputs)
	}
	// size = 64 on the fixture's 16-px VAE: 4 columns × 4 rows of 64-px images.
	checkPNG(t, out, 4*64, 4*64)
}

// TestServeImages: `modelrt serve` on the text-to-image example answers POST
// /v1/images/generations with the images `modelrt text2image` draws for the same request.
func TestServeImages(t *testing.T) {
	s := startServe(t, append([]string{"--config", examples + "text-to-image"}, fixturePriorVars(t)...)...)
	status, body := post(t, s.url+"/v1/images/generations",
		`{"model":"prior","prompt":"the digit 7","n":2,"size":"32x32","response_format":"b64_json","seed":5,"guidance_scale":3}`)
	var r struct {
		Data []struct {
			B64JSON string `json:"b64_json"`
		} `json:"data"`
	}
	if status != 200 || json.Unmarshal([]byte(body), &r) != nil || len(r.Data) != 2 {
		t.Fatalf("images: %d %s\n%s", status, body, s.log())
	}
	dir := t.TempDir()
	cli := text2imageRun(t, "--model", priorTiny, "--prompt", "the digit 7", "--n", "2", "--seed", "5", "--guidance", "3",
		"--size", "32", "--out", filepath.Join(dir, "cli"))
	for i, path := range cli.Images {
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := base64.StdEncoding.DecodeString(r.Data[i].B64JSON)
		if err != nil {
			t.Fatal(err)
		}
		a, errA := png.Decode(bytes.NewReader(got))
		b, errB := png.Decode(bytes.NewReader(want))
		if errA != nil || errB != nil || a.Bounds() != b.Bounds() {
			t.Fatalf("image %d: daemon %v (%v), CLI %v (%v)", i, a.Bounds(), errA, b.Bounds(), errB)
		}
		for y := range a.Bounds().Dy() {
			for x := range a.Bounds().Dx() {
				if a.At(x, y) != b.At(x, y) {
					t.Fatalf("image %d differs from the CLI's at (%d,%d)", i, x, y)
				}
			}
		}
	}
	if status, body := post(t, s.url+"/v1/images/generations", `{"model":"prior","prompt":"the digit 7","response_format":"url"}`); status != 400 ||
		!strings.Contains(body, "keeps no image files to link to") {
		t.Errorf("url: %d %s", status, body)
	}
}
