package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelrt/modelrt/pipelines"
	"github.com/modelrt/modelrt/runtime/engine"
)

// imagesConfig declares the fixture prior, its VAE and a GPT-2 that is not a prior.
const imagesConfig = `
backend "native" {
  plugin = "%[1]s/modelrt-native"
}
model "prior" {
  backend = backend.native
  path    = "%[2]s/glyph-prior-tiny"
  task    = "causal-lm"
}
model "vae" {
  backend = backend.native
  path    = "%[2]s/vae-tiny"
  task    = "vae"
}
model "gpt2" {
  backend = backend.native
  path    = "%[2]s/gpt2-tiny"
  task    = "causal-lm"
}
`

func newImagesServer(t *testing.T, opts Options) (*Server, *httptest.Server) {
	t.Helper()
	models, err := filepath.Abs("../../testdata/models")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "images.hcl")
	if err := os.WriteFile(path, fmt.Appendf(nil, imagesConfig, binDir, models), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, diags := pipelines.Load(path, pipelines.LoadOptions{})
	if diags.HasErrors() {
		t.Fatalf("load %s: %s", path, diags.Error())
	}
	e, err := engine.New(context.Background(), cfg, engine.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	opts.Logger = quietLogger()
	s := New(e, opts)
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		ts.Close()
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s, ts
}

type imagesReply struct {
	Created int64 `json:"created"`
	Data    []struct {
		B64JSON       string `json:"b64_json"`
		RevisedPrompt string `json:"revised_prompt"`
	} `json:"data"`
	Usage imageUsage `json:"usage"`
}

func postImages(t *testing.T, ts *httptest.Server, body string, header ...string) (int, http.Header, []byte) {
	t.Helper()
	return call(t, ts.Client(), "POST", ts.URL+"/v1/images/generations", body, header...)
}

func decodePNGs(t *testing.T, r imagesReply) []image.Image {
	t.Helper()
	var out []image.Image
	for i, d := range r.Data {
		raw, err := base64.StdEncoding.DecodeString(d.B64JSON)
		if err != nil {
			t.Fatalf("image %d: base64: %v", i, err)
		}
		img, err := png.Decode(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("image %d: png: %v", i, err)
		}
		out = append(out, img)
	}
	return out
}

func TestImageGenerations(t *testing.T) {
	_, ts := newImagesServer(t, Options{})
	status, _, body := postImages(t, ts, `{"model":"prior","prompt":"The letter   A","n":2,"size":"32x32","response_format":"b64_json",
		"output_format":"png","seed":3,"guidance_scale":2,"temperature":0.9,"top_k":8}`)
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	var r imagesReply
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	imgs := decodePNGs(t, r)
	if len(imgs) != 2 || r.Created < time.Now().Add(-time.Minute).Unix() {
		t.Fatalf("%d images, created %d", len(imgs), r.Created)
	}
	for i, img := range imgs {
		if b := img.Bounds(); b.Dx() != 32 || b.Dy() != 32 {
			t.Errorf("image %d is %v, want 32x32 (16x16 native, upscaled twice)", i, b)
		}
		if r.Data[i].RevisedPrompt != "the letter A" {
			t.Errorf("revised_prompt %q", r.Data[i].RevisedPrompt)
		}
	}
	if r.Usage != (imageUsage{InputTokens: 4, OutputTokens: 2 * 64, TotalTokens: 4 + 128}) {
		t.Errorf("usage %+v", r.Usage)
	}
	// Image 1 of the batch is image 0 of a request with seed+1: no dependence on the batch.
	status, _, body = postImages(t, ts, `{"model":"prior","prompt":"the letter A","size":"32x32","seed":4,"guidance_scale":2,"temperature":0.9,"top_k":8}`)
	var one imagesReply
	if status != 200 || json.Unmarshal(body, &one) != nil || len(one.Data) != 1 {
		t.Fatalf("n=1: %d %s", status, body)
	}
	if one.Data[0].B64JSON != r.Data[1].B64JSON {
		t.Error("image 1 of n=2 (seed 3) differs from the single image of seed 4")
	}
	if one.Data[0].B64JSON == r.Data[0].B64JSON {
		t.Error("seeds 3 and 4 drew the same image")
	}
	_, _, metrics := call(t, ts.Client(), "GET", ts.URL+"/metrics", nil)
	if want := `modelrt_requests_total{api="images",code="200",target="prior"} 2`; !strings.Contains(string(metrics), want) {
		t.Errorf("metrics lack %q", want)
	}
}

func TestImageGenerationsBadRequests(t *testing.T) {
	_, ts := newImagesServer(t, Options{})
	long := "the capital letter A, bold light italic serif sans mono condensed"
	for _, c := range []struct {
		body   string
		status int
		want   string
	}{
		{`{"model":"prior","prompt":"the letter A","n":0}`, 400, "n = 0: want 1 to 10"},
		{`{"model":"prior","prompt":"the letter A","n":11}`, 400, "n = 11: want 1 to 10"},
		{`{"model":"prior","prompt":"the letter A","size":"24x24"}`, 400, "size 24x24: the model draws 16x16 images"},
		{`{"model":"prior","prompt":"the letter A","size":"1024x1792"}`, 400, "the model draws 16x16"},
		{`{"model":"prior","prompt":"the letter A","size":"big"}`, 400, `size "big": want WxH`},
		{`{"model":"prior","prompt":"the letter A","response_format":"url"}`, 400, "keeps no image files to link to"},
		{`{"model":"prior","prompt":"the letter A","output_format":"jpeg"}`, 400, `"png" only`},
		{`{"model":"prior","prompt":"the letter A","guidance_scale":-1}`, 400, "guidance -1"},
		{`{"model":"prior","prompt":"the letter A","temperature":-1}`, 400, "temperature"},
		{`{"model":"prior","prompt":"   "}`, 400, "caption is empty"},
		{`{"model":"prior","prompt":"` + long + `"}`, 400, "tokens; the model's prefix holds 24"},
		{`{"model":"prior"}`, 400, "prompt: required"},
		{`{"prompt":"the letter A"}`, 400, "model: required"},
		{`{"model":"nope","prompt":"the letter A"}`, 404, `model "nope" does not exist`},
		{`{"model":"gpt2","prompt":"the letter A"}`, 400, "not a text-to-image prior"},
		{`{"model":"vae","prompt":"the letter A"}`, 400, "is a vae model"},
	} {
		status, _, body := postImages(t, ts, c.body)
		if status != c.status || !strings.Contains(errorMessage(t, body), c.want) {
			t.Errorf("%s: %d %s; want %d saying %q", c.body, status, body, c.status, c.want)
		}
	}
}

func TestImageGenerationsLimitsAndAuth(t *testing.T) {
	s, ts := newImagesServer(t, Options{MaxConcurrency: 1, MaxQueue: -1, RetryAfter: 3 * time.Second, AuthToken: "s3cret"})
	auth := []string{"Authorization", "Bearer s3cret"}
	if status, _, body := postImages(t, ts, `{"model":"prior","prompt":"the letter A"}`); status != 401 {
		t.Errorf("without the token: %d %s", status, body)
	}
	l := s.cur.limits["vae"]
	if err := l.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	status, h, body := postImages(t, ts, `{"model":"prior","prompt":"the letter A"}`, auth...)
	if status != http.StatusTooManyRequests || h.Get("Retry-After") != "3" || !strings.Contains(string(body), "rate_limit_error") {
		t.Errorf("VAE at its limit: %d Retry-After=%q %s", status, h.Get("Retry-After"), body)
	}
	l.release()
	if status, _, body := postImages(t, ts, `{"model":"prior","prompt":"the letter A","seed":1}`, auth...); status != 200 {
		t.Errorf("after release: %d %s", status, body)
	}
}
