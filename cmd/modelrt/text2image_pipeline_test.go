package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// textToImageVars points the text-to-image example at the test fixture while the trained prior
// (examples/models/glyph-prior) is absent; other examples need nothing.
func textToImageVars(t *testing.T, dir string) []string {
	t.Helper()
	if filepath.Base(dir) != "text-to-image" {
		return nil
	}
	if _, err := os.Stat(examples + "../models/glyph-prior/text2image.json"); err == nil {
		return nil
	}
	t.Logf("%s: examples/models/glyph-prior is absent; using testdata/models/glyph-prior-tiny", dir)
	return fixturePriorVars(t)
}

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
	cli := text2imageRun(t, "--model", priorTiny, "--prompt", "The letter  k", "--n", "3", "--seed", "5", "--guidance", "3",
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
