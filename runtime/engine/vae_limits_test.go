package engine

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"github.com/modelrt/modelrt/sdk"
)

// TestVAEStagesCheckBeforeSending: a latent decoding to an image beyond the VAE's
// max_image_size (vae-tiny: sample_size 16 × 4 = 64 px) is refused by the host with
// InvalidArgument naming the latent and the limit, and never reaches the plugin; a latent at
// the limit decodes.
func TestVAEStagesCheckBeforeSending(t *testing.T) {
	abs, err := filepath.Abs(vaeTiny)
	if err != nil {
		t.Fatal(err)
	}
	cfg := load(t, fmt.Sprintf(`
backend "native" {
  plugin = "modelrt-native"
}
model "vae" {
  backend = backend.native
  path    = %q
  task    = "vae"
}
pipeline "decode" {
  input "side" {
    type = number
  }
  stage "z" {
    use   = "latent.sample"
    model = model.vae
    shape = [1, 4, input.side, input.side]
    seed  = 1
  }
  stage "dec" {
    use    = "vae.decode"
    model  = model.vae
    latent = stage.z.latent
  }
  output "image" {
    value = stage.dec.image
  }
}
`, abs))
	e := newEngine(t, cfg)
	if got := e.Model("vae").Info.Metadata[sdk.MetaMaxImageSize]; got != "64" {
		t.Fatalf("metadata %s = %q, want 64", sdk.MetaMaxImageSize, got)
	}
	side := func(n int64) map[string]cty.Value { return map[string]cty.Value{"side": cty.NumberIntVal(n)} }
	_, err = e.Run(context.Background(), "decode", side(64), nil)
	if sdk.CodeOf(err) != sdk.CodeInvalidArgument {
		t.Fatalf("decode of a 64×64 latent: %v, want InvalidArgument", err)
	}
	for _, want := range []string{"not sent", "latent", "128×128", "64 pixels per side"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not name %q", err, want)
		}
	}
	if _, err := e.Run(context.Background(), "decode", side(32), nil); err != nil {
		t.Errorf("decode at the limit: %v", err)
	}
}
