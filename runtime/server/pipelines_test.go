package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/runtime/engine"
)

func TestPipelines(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	c := ts.Client()
	status, _, body := call(t, c, "POST", ts.URL+"/v1/pipelines/complete:run", `{"inputs":{"prompt":"Hello","max_new_tokens":5}}`)
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	var res struct {
		Outputs struct {
			Text string  `json:"text"`
			IDs  []int64 `json:"ids"`
		} `json:"outputs"`
		Stages []engine.StageReport `json:"stages"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	if res.Outputs.Text == "" || len(res.Outputs.IDs) < 2 || len(res.Stages) != 1 || res.Stages[0].GeneratedTokens < 1 {
		t.Errorf("run = %s", body)
	}

	// Streamed: text events concatenate to the text output, then one outputs event.
	req, _ := http.NewRequest("POST", ts.URL+"/v1/pipelines/complete:run", strings.NewReader(`{"inputs":{"prompt":"Hello","max_new_tokens":5}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	events, data := sseData(t, resp.Body)
	resp.Body.Close()
	var text strings.Builder
	for i, ev := range events {
		if ev == "text" {
			var d struct{ Delta string }
			_ = json.Unmarshal([]byte(data[i]), &d)
			text.WriteString(d.Delta)
		}
	}
	if len(events) < 3 || events[len(events)-1] != "outputs" || text.String() != res.Outputs.Text {
		t.Errorf("events %q, streamed text %q, want %q", events, text.String(), res.Outputs.Text)
	}

	// Images come back as PNG, tensors in the v2 form.
	status, _, body = call(t, c, "POST", ts.URL+"/v1/pipelines/prior:run?stream=false", `{"inputs":{"seed":5}}`)
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	var prior struct {
		Outputs struct {
			Image  imageJSON `json:"image"`
			Latent struct {
				Shape    []int64   `json:"shape"`
				Datatype string    `json:"datatype"`
				Data     []float32 `json:"data"`
			} `json:"latent"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(body, &prior); err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(prior.Outputs.Image.Data)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("image output is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != prior.Outputs.Image.Width || b.Dx() != 8 || b.Dy() != 8 {
		t.Errorf("image %v, reported %dx%d; the tiny VAE doubles the 4x4 latent", b, prior.Outputs.Image.Width, prior.Outputs.Image.Height)
	}
	if l := prior.Outputs.Latent; l.Datatype != "FP32" || len(l.Data) != 64 || fmt.Sprint(l.Shape) != "[1 4 4 4]" {
		t.Errorf("latent = %+v", l)
	}

	status, _, body = call(t, c, "GET", ts.URL+"/v1/pipelines", nil)
	if status != 200 || !strings.Contains(string(body), `"name":"out","type":"string","required":false,"fixed":true`) ||
		!strings.Contains(string(body), `"name":"image","type":"image","required":true,"image":true`) || strings.Contains(string(body), "steered") {
		t.Errorf("pipelines = %s", body)
	}

	// An image input: the request carries the PNG, the server picks the file and removes it.
	src := image.NewRGBA(image.Rect(0, 0, 6, 4))
	for i := range src.Pix {
		src.Pix[i] = uint8(i * 7)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, src); err != nil {
		t.Fatal(err)
	}
	// The uploads go to a temporary directory of this test alone, so that no other process
	// making or removing modelrt-upload-* directories in the shared one (a server of another
	// test package running at the same time) can change the count.
	t.Setenv("TMPDIR", t.TempDir())
	before, _ := filepath.Glob(filepath.Join(os.TempDir(), "modelrt-upload-*"))
	up, _ := json.Marshal(map[string]any{"inputs": map[string]any{"image": imageUpload{ContentType: "image/png", Data: base64.StdEncoding.EncodeToString(buf.Bytes())}}})
	status, _, body = call(t, c, "POST", ts.URL+"/v1/pipelines/reconstruct:run", up)
	var rec struct {
		Outputs struct {
			Image imageJSON `json:"image"`
		} `json:"outputs"`
	}
	if status != 200 || json.Unmarshal(body, &rec) != nil || rec.Outputs.Image.Width != 6 || rec.Outputs.Image.Height != 4 {
		t.Errorf("reconstruct: %d %.300s", status, body)
	}
	if after, _ := filepath.Glob(filepath.Join(os.TempDir(), "modelrt-upload-*")); len(after) != len(before) {
		t.Errorf("upload directories before %v, after %v", before, after)
	}
}
