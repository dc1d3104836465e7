package engine

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/modelrt/modelrt/runtime/lm"
	"github.com/modelrt/modelrt/runtime/text2image"
)

// TestRunSharesSteps: what `modelrt run` executes — a pipeline with two independent generate
// stages and a guided two-image image.generate stage (four prior rows) — advances the
// generations through each model's scheduler in shared steps, and each gives what it gives
// alone: the generate stages' text as in a pipeline of that stage only, the images' codes as
// the prior drawn in one session of its own (no scheduler).
func TestRunSharesSteps(t *testing.T) {
	prior, err := filepath.Abs("../../testdata/models/glyph-prior-tiny")
	if err != nil {
		t.Fatal(err)
	}
	vaeDir := filepath.Join(filepath.Dir(prior), "vae-tiny")
	stage := func(name, prompt string) string {
		return `
  stage "` + name + `" {
    use            = "generate"
    model          = model.gpt2
    prompt         = "` + prompt + `"
    max_new_tokens = 48
  }`
	}
	src := header + `
model "prior" {
  backend = backend.native
  path    = "` + prior + `"
  task    = "causal-lm"
}
model "vae" {
  backend = backend.native
  path    = "` + vaeDir + `"
  task    = "vae"
}
pipeline "both" {` + stage("a", "The cat sat") + stage("b", "Once upon a time") + `
  stage "draw" {
    use     = "image.generate"
    prior   = model.prior
    vae     = model.vae
    caption = "the letter A"
    n       = 2
    sampling {
      guidance = 2
      seed     = 5
    }
  }
  output "a" {
    value = stage.a.text
  }
  output "b" {
    value = stage.b.text
  }
  output "codes" {
    value = stage.draw.codes
  }
}
pipeline "a" {` + stage("a", "The cat sat") + `
  output "a" {
    value = stage.a.text
  }
}
pipeline "b" {` + stage("b", "Once upon a time") + `
  output "b" {
    value = stage.b.text
  }
}
`
	e := newEngine(t, load(t, src))
	ctx := context.Background()
	alone := map[string]string{}
	for _, p := range []string{"a", "b"} {
		res, err := e.Run(ctx, p, nil, nil)
		if err != nil {
			t.Fatalf("pipeline %s: %v", p, err)
		}
		alone[p] = res.Outputs[p].AsString()
	}
	gs := e.Scheduler("gpt2").Metrics()
	ps := e.Scheduler("prior").Metrics()
	g0, gr0 := gs.Steps()
	p0, pr0 := ps.Steps()
	res, err := e.Run(ctx, "both", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a", "b"} {
		if got := res.Outputs[p].AsString(); got != alone[p] {
			t.Errorf("stage %s beside the others wrote %q, alone %q", p, got, alone[p])
		}
	}
	g1, gr1 := gs.Steps()
	p1, pr1 := ps.Steps()
	gSteps, gRows := g1-g0, gr1-gr0
	pSteps, pRows := p1-p0, pr1-pr0
	t.Logf("gpt2: %d steps advanced %.0f sessions (mean %.2f); prior: %d steps advanced %.0f sessions (mean %.2f)",
		gSteps, gRows, gRows/float64(gSteps), pSteps, pRows, pRows/float64(pSteps))
	if gRows <= float64(gSteps) {
		t.Errorf("gpt2: the two generate stages never shared a step (%d steps, %.0f advances)", gSteps, gRows)
	}
	// Four rows (two images, each with its unconditional row) decoding together: nearly every
	// step advances all four.
	if pRows < 3*float64(pSteps) {
		t.Errorf("prior: %d steps advanced %.0f rows; the guided two-image request's four rows should share steps (mean ≥ 3)", pSteps, pRows)
	}

	// The same codes from the prior in a session of its own, without the scheduler.
	m, err := text2image.Load(prior, vaeDir)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := e.LM("prior")
	if err != nil {
		t.Fatal(err)
	}
	own := &lm.Model{Backend: shared.Backend, Name: shared.Name, LMFacts: shared.LMFacts}
	o := text2image.DefaultOptions()
	o.N, o.Guidance, o.Seed = 2, 2, 5
	want, err := (&text2image.Pipeline{Model: m, Prior: own}).Codes(ctx, "the letter A", o)
	if err != nil {
		t.Fatal(err)
	}
	var got [][]int
	for it := res.Outputs["codes"].ElementIterator(); it.Next(); {
		_, row := it.Element()
		var codes []int
		for jt := row.ElementIterator(); jt.Next(); {
			_, v := jt.Element()
			n, _ := v.AsBigFloat().Int64()
			codes = append(codes, int(n))
		}
		got = append(got, codes)
	}
	if len(got) != len(want.Codes) {
		t.Fatalf("image.generate returned %d code rows, want %d", len(got), len(want.Codes))
	}
	for i := range got {
		if !slices.Equal(got[i], want.Codes[i]) {
			t.Errorf("image %d: codes through the scheduler %v, in a session of its own %v", i, got[i], want.Codes[i])
		}
	}
}
