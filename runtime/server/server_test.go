package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/modelrt/modelrt/pipelines"
	"github.com/modelrt/modelrt/runtime/engine"
	"github.com/modelrt/modelrt/sdk"
)

// binDir holds the real plugin binaries, built once by TestMain.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "modelrt-server-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "modelrt-native"), "../../plugins/native")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "build the native plugin: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testConfig is a configuration over the fixture models, with a pipeline of each kind the
// server treats differently.
const testConfig = `
backend "native" {
  plugin = "%[1]s/modelrt-native"
}
model "gpt2" {
  backend = backend.native
  path    = "%[2]s/gpt2-tiny"
  task    = "causal-lm"
}
model "vae" {
  backend = backend.native
  path    = "%[2]s/vae-tiny"
  task    = "vae"
}
pipeline "complete" {
  input "prompt" {
    type = string
  }
  input "max_new_tokens" {
    type    = number
    default = 8
  }
  stage "gen" {
    use            = "generate"
    model          = model.gpt2
    prompt         = input.prompt
    max_new_tokens = input.max_new_tokens
  }
  output "text" {
    value = stage.gen.text
  }
  output "ids" {
    value = stage.gen.ids
  }
}
pipeline "prior" {
  input "seed" {
    type    = number
    default = 3
  }
  stage "z" {
    use   = "latent.sample"
    model = model.vae
    shape = [1, 4, 4, 4]
    seed  = input.seed
  }
  stage "dec" {
    use    = "vae.decode"
    model  = model.vae
    latent = stage.z.latent
  }
  output "image" {
    value = stage.dec.image
  }
  output "latent" {
    value = stage.z.latent
  }
}
pipeline "reconstruct" {
  input "image" {
    type = string
  }
  stage "load" {
    use  = "image.load"
    path = input.image
  }
  stage "enc" {
    use   = "vae.encode"
    model = model.vae
    image = stage.load.image
  }
  stage "dec" {
    use    = "vae.decode"
    model  = model.vae
    latent = stage.enc.latent
  }
  output "image" {
    value = stage.dec.image
  }
}
pipeline "save" {
  input "out" {
    type    = string
    default = "%[3]s/never.png"
  }
  input "note" {
    type    = string
    default = "x"
  }
  stage "z" {
    use   = "latent.sample"
    model = model.vae
    shape = [1, 4, 4, 4]
  }
  stage "dec" {
    use    = "vae.decode"
    model  = model.vae
    latent = stage.z.latent
  }
  stage "save" {
    use   = "image.save"
    image = stage.dec.image
    path  = input.out
  }
  output "path" {
    value = stage.save.path
  }
  output "secret" {
    value = env(input.note)
  }
}
pipeline "steered" {
  input "prompt" {
    type = string
  }
  stage "gen" {
    use            = "generate"
    model          = model.gpt2
    prompt         = input.prompt
    max_new_tokens = 2
  }
  stage "load" {
    use  = "image.load"
    path = stage.gen.text
  }
  output "image" {
    value = stage.load.image
  }
}
`

// newEngine loads testConfig and starts its engine.
func newEngine(t testing.TB) *engine.Engine {
	t.Helper()
	models, err := filepath.Abs("../../testdata/models")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "serve.hcl")
	if err := os.WriteFile(path, fmt.Appendf(nil, testConfig, binDir, models, t.TempDir()), 0o644); err != nil {
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
	return e
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newTestServer serves a fresh engine on a loopback listener; both are closed with the test.
func newTestServer(t *testing.T, opts Options) (*Server, *httptest.Server) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	s := New(newEngine(t), opts)
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		ts.Close()
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s, ts
}

// call sends a JSON body (a string is sent as is) and returns the status and the body.
func call(t *testing.T, c *http.Client, method, url string, body any, header ...string) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, url, err)
	}
	return resp.StatusCode, resp.Header, out
}

// sseData returns the data of every event of a stream, and each event's name ("" for none).
func sseData(t *testing.T, body io.Reader) (events, data []string) {
	t.Helper()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			events = append(events, event)
			data = append(data, strings.TrimPrefix(line, "data: "))
			event = ""
		}
	}
	return events, data
}

// openSessions asks the backend of a model how many sessions it holds.
func openSessions(t *testing.T, e *engine.Engine, model string) int {
	t.Helper()
	b, err := e.Backend(model)
	if err != nil {
		t.Fatal(err)
	}
	sr, ok := b.(sdk.StatsReporter)
	if !ok {
		t.Fatalf("backend of %s reports no stats", model)
	}
	st, err := sr.Stats(context.Background(), &sdk.StatsRequest{})
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	return st.OpenSessions
}

// settle polls cond until it holds or the deadline passes (the work it waits for is
// asynchronous: a handler finishing after its client left).
func settle(deadline time.Duration, cond func() bool) bool {
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

func TestCompletions(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	c := ts.Client()
	req := map[string]any{"model": "gpt2", "prompt": "Hello", "max_tokens": 6, "temperature": 0}
	status, _, body := call(t, c, "POST", ts.URL+"/v1/completions", req)
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	var got completionResponse
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Choices) != 1 || got.Choices[0].Text == "" || got.Object != "text_completion" || !strings.HasPrefix(got.ID, "cmpl-") {
		t.Fatalf("response = %s", body)
	}
	if u := got.Usage; u == nil || u.PromptTokens != 1 || u.CompletionTokens < 1 || u.CompletionTokens > 6 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
		t.Errorf("usage = %+v", got.Usage)
	}

	// The same request streamed: the deltas concatenate to the same greedy text.
	req["stream"] = true
	req["stream_options"] = map[string]bool{"include_usage": true}
	js, _ := json.Marshal(req)
	resp, err := c.Post(ts.URL+"/v1/completions", "application/json", bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("content type %q", ct)
	}
	_, data := sseData(t, resp.Body)
	if len(data) < 3 || data[len(data)-1] != "[DONE]" {
		t.Fatalf("stream = %q", data)
	}
	var text strings.Builder
	var finish string
	var streamedUsage *usage
	for _, d := range data[:len(data)-1] {
		var chunk completionResponse
		if err := json.Unmarshal([]byte(d), &chunk); err != nil {
			t.Fatalf("chunk %q: %v", d, err)
		}
		for _, ch := range chunk.Choices {
			text.WriteString(ch.Text)
			if ch.FinishReason != nil {
				finish = *ch.FinishReason
			}
		}
		if chunk.Usage != nil {
			streamedUsage = chunk.Usage
		}
	}
	if text.String() != got.Choices[0].Text || finish != *got.Choices[0].FinishReason {
		t.Errorf("streamed %q (%s), want %q (%s)", text.String(), finish, got.Choices[0].Text, *got.Choices[0].FinishReason)
	}
	if streamedUsage == nil || *streamedUsage != *got.Usage {
		t.Errorf("streamed usage %+v, want %+v", streamedUsage, got.Usage)
	}

	// A batch of prompts, seeded sampling: one choice per prompt, reproducible with its seed.
	batch := map[string]any{"model": "gpt2", "prompt": []string{"Hello", "Once upon a time"}, "max_tokens": 4, "seed": 7, "stop": []string{"\n\n"}}
	_, _, b1 := call(t, c, "POST", ts.URL+"/v1/completions", batch)
	_, _, b2 := call(t, c, "POST", ts.URL+"/v1/completions", batch)
	var r1, r2 completionResponse
	if json.Unmarshal(b1, &r1) != nil || json.Unmarshal(b2, &r2) != nil || len(r1.Choices) != 2 || r1.Choices[1].Index != 1 {
		t.Fatalf("batch: %s", b1)
	}
	for i := range r1.Choices {
		if r1.Choices[i].Text != r2.Choices[i].Text {
			t.Errorf("seeded choice %d differs: %q vs %q", i, r1.Choices[i].Text, r2.Choices[i].Text)
		}
	}
	if r1.Usage.PromptTokens != 1+4 {
		t.Errorf("batch prompt tokens = %d, want 5", r1.Usage.PromptTokens)
	}

	status, _, body = call(t, c, "GET", ts.URL+"/v1/models", nil)
	if status != 200 || !strings.Contains(string(body), `"id":"gpt2"`) || strings.Contains(string(body), `"vae"`) {
		t.Errorf("models = %d %s (want gpt2 only: vae is not a causal-lm)", status, body)
	}
}

// errorMessage returns the message of a JSON error body, in OpenAI's shape or KServe's.
func errorMessage(t *testing.T, body []byte) string {
	t.Helper()
	var doc struct {
		Error json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.Error == nil {
		t.Errorf("body is not a JSON error: %s", body)
		return ""
	}
	var v1 struct {
		Message, Type, Code string
	}
	if json.Unmarshal(doc.Error, &v1) == nil {
		if v1.Message == "" || v1.Type == "" || v1.Code == "" {
			t.Errorf("error object lacks message, type or code: %s", body)
		}
		return v1.Message
	}
	var v2 string
	if err := json.Unmarshal(doc.Error, &v2); err != nil {
		t.Errorf("error is neither an object nor a string: %s", body)
	}
	return v2
}

// TestBadRequests: each bad request gets a 4xx with a JSON error body, and the server goes on
// serving.
func TestBadRequests(t *testing.T) {
	_, ts := newTestServer(t, Options{MaxBodyBytes: 4096})
	c := ts.Client()
	long := strings.Repeat("a b ", 40)
	cases := []struct {
		name, method, path string
		body               any
		status             int
		want               string
	}{
		{"malformed JSON", "POST", "/v1/completions", `{"model": "gpt2", "prompt": `, 400, "malformed JSON"},
		{"not an object", "POST", "/v1/completions", `[1, 2]`, 400, "want an object"},
		{"empty body", "POST", "/v1/completions", ``, 400, "empty request body"},
		{"two values", "POST", "/v1/completions", `{"model":"gpt2","prompt":"x"} {}`, 400, "more than one"},
		{"max_tokens a string", "POST", "/v1/completions", `{"model":"gpt2","prompt":"x","max_tokens":"ten"}`, 400, "max_tokens"},
		{"prompt a number", "POST", "/v1/completions", `{"model":"gpt2","prompt":5}`, 400, "prompt"},
		{"temperature out of range", "POST", "/v1/completions", `{"model":"gpt2","prompt":"x","temperature":9}`, 400, "temperature"},
		{"n > 1", "POST", "/v1/completions", `{"model":"gpt2","prompt":"x","n":2}`, 400, "n = 2"},
		{"unknown model", "POST", "/v1/completions", `{"model":"gpt5","prompt":"x"}`, 404, `"gpt5" does not exist`},
		{"vae for completions", "POST", "/v1/completions", `{"model":"vae","prompt":"x"}`, 400, "causal-lm"},
		{"prompt beyond the context", "POST", "/v1/completions", `{"model":"gpt2","prompt":"` + long + `"}`, 400, "context of 64 tokens"},
		{"token id beyond the vocabulary", "POST", "/v1/completions", `{"model":"gpt2","prompt":[1, 99999]}`, 400, "vocabulary"},
		{"oversized body", "POST", "/v1/completions", `{"model":"gpt2","prompt":"` + strings.Repeat("x", 5000) + `"}`, 413, "exceeds the limit of 4096 bytes"},
		{"unknown pipeline", "POST", "/v1/pipelines/nope:run", `{"inputs":{}}`, 404, `"nope" does not exist`},
		{"pipeline without :run", "POST", "/v1/pipelines/complete", `{"inputs":{}}`, 404, ":run"},
		{"undeclared input", "POST", "/v1/pipelines/complete:run", `{"inputs":{"prompt":"x","temp":1}}`, 400, `no input "temp"`},
		{"input of the wrong type", "POST", "/v1/pipelines/complete:run", `{"inputs":{"prompt":"x","max_new_tokens":"many"}}`, 400, `input "max_new_tokens"`},
		{"missing input", "POST", "/v1/pipelines/complete:run", `{"inputs":{}}`, 400, "Missing required input"},
		{"pipeline prompt beyond the context", "POST", "/v1/pipelines/complete:run", `{"inputs":{"prompt":"` + long + `"}}`, 400, "context"},
		{"file path from a request", "POST", "/v1/pipelines/save:run", `{"inputs":{"out":"/etc/passwd"}}`, 403, "image.save"},
		{"env from a request", "POST", "/v1/pipelines/save:run", `{"inputs":{"note":"HOME"}}`, 403, "env()"},
		{"file name for an image input", "POST", "/v1/pipelines/reconstruct:run", `{"inputs":{"image":"/etc/passwd"}}`, 400, "does not take file names"},
		{"image input not base64", "POST", "/v1/pipelines/reconstruct:run", `{"inputs":{"image":{"data":"%%%"}}}`, 400, "not base64"},
		{"image input not an image", "POST", "/v1/pipelines/reconstruct:run", `{"inputs":{"image":{"data":"aGVsbG8="}}}`, 400, "cannot decode"},
		{"path steered by a model", "POST", "/v1/pipelines/steered:run", `{"inputs":{"prompt":"x"}}`, 403, "depends on stage outputs"},
		{"v2 unknown model", "POST", "/v2/models/gpt5/infer", `{"inputs":[]}`, 404, "not served"},
		{"v2 unknown version", "GET", "/v2/models/gpt2/versions/7", nil, 404, "version"},
		{"v2 no inputs", "POST", "/v2/models/gpt2/infer", `{"inputs":[]}`, 400, "at least one"},
		{"v2 NaN as a string", "POST", "/v2/models/vae/infer", `{"inputs":[{"name":"latent","datatype":"FP32","shape":[1,4,1,2],"data":[1,2,"NaN",4,5,6,7,8]}]}`, 400, "element 2: NaN is not finite"},
		{"v2 NaN as a bare token", "POST", "/v2/models/vae/infer", `{"inputs":[{"name":"latent","datatype":"FP32","shape":[1,1],"data":[NaN]}]}`, 400, "malformed JSON"},
		{"v2 infinity", "POST", "/v2/models/vae/infer", `{"inputs":[{"name":"latent","datatype":"FP32","shape":[1,1],"data":[1e39]}]}`, 400, "not finite"},
		{"v2 count and shape disagree", "POST", "/v2/models/gpt2/infer", `{"inputs":[{"name":"input_ids","datatype":"INT64","shape":[1,3],"data":[1,2]}]}`, 400, "needs 3 elements"},
		{"v2 float for an int", "POST", "/v2/models/gpt2/infer", `{"inputs":[{"name":"input_ids","datatype":"INT64","shape":[1,1],"data":[1.5]}]}`, 400, `"1.5" is not a INT64 integer`},
		{"v2 unknown datatype", "POST", "/v2/models/gpt2/infer", `{"inputs":[{"name":"input_ids","datatype":"COMPLEX","shape":[1],"data":[1]}]}`, 400, "datatype"},
		{"v2 negative dimension", "POST", "/v2/models/gpt2/infer", `{"inputs":[{"name":"input_ids","datatype":"INT64","shape":[-1],"data":[1]}]}`, 400, "negative"},
		{"v2 id beyond the vocabulary (backend)", "POST", "/v2/models/gpt2/infer", `{"inputs":[{"name":"input_ids","datatype":"INT64","shape":[1,1],"data":[99999]}]}`, 400, "InvalidArgument"},
		{"v2 wrong rank (backend)", "POST", "/v2/models/vae/infer", `{"inputs":[{"name":"latent","datatype":"FP32","shape":[2],"data":[1,2]}]}`, 400, "latent"},
		{"no such route", "GET", "/v1/files/../../etc/passwd", nil, 404, "no route"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, h, body := call(t, c, tc.method, ts.URL+tc.path, tc.body)
			if status != tc.status {
				t.Errorf("status %d, want %d: %s", status, tc.status, body)
			}
			if ct := h.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
			if msg := errorMessage(t, body); !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not mention %q", msg, tc.want)
			}
		})
	}
	// Still serving.
	status, _, body := call(t, c, "POST", ts.URL+"/v1/completions", `{"model":"gpt2","prompt":"Hello","max_tokens":2}`)
	if status != 200 {
		t.Errorf("after the bad requests: %d %s", status, body)
	}
}

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

func TestKServeV2(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	c := ts.Client()
	for _, p := range []string{"/v2/health/live", "/v2/health/ready", "/v2/models/vae/ready", "/v2/models/gpt2", "/v2", "/v2/models/gpt2/versions/1/ready"} {
		if status, _, body := call(t, c, "GET", ts.URL+p, nil); status != 200 {
			t.Errorf("GET %s: %d %s", p, status, body)
		}
	}
	latent := make([]float32, 1*4*2*3)
	for i := range latent {
		latent[i] = float32(i%5)/5 - 0.4
	}
	req := map[string]any{"id": "r1", "inputs": []map[string]any{{"name": "latent", "datatype": "FP32", "shape": []int{1, 4, 2, 3}, "data": latent}}}
	status, _, body := call(t, c, "POST", ts.URL+"/v2/models/vae/infer", req)
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	var res struct {
		ModelName string `json:"model_name"`
		ID        string `json:"id"`
		Outputs   []struct {
			Name     string    `json:"name"`
			Shape    []int64   `json:"shape"`
			Datatype string    `json:"datatype"`
			Data     []float32 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	if res.ModelName != "vae" || res.ID != "r1" || len(res.Outputs) != 1 || res.Outputs[0].Name != "image" ||
		fmt.Sprint(res.Outputs[0].Shape) != "[1 3 4 6]" || len(res.Outputs[0].Data) != 72 {
		t.Errorf("infer = %+v", res)
	}
	// Nested data (the shape is authoritative) and a causal-lm forward pass.
	nested := `{"inputs":[{"name":"input_ids","datatype":"INT64","shape":[2,2],"data":[[464,3290],[11,13]]}],"parameters":{"logits":"last"}}`
	status, _, body = call(t, c, "POST", ts.URL+"/v2/models/gpt2/infer", nested)
	if status != 200 || !strings.Contains(string(body), `"shape":[2,1,50257]`) {
		t.Errorf("gpt2 infer: %d %.300s", status, body)
	}
}

// TestRequestTimeout: a request that cannot finish within the timeout gets a JSON timeout error
// (408 if the deadline passes while its body is read, 504 after), and frees everything.
func TestRequestTimeout(t *testing.T) {
	s, ts := newTestServer(t, Options{RequestTimeout: time.Nanosecond})
	for _, path := range []string{"/v1/completions", "/v1/pipelines/complete:run"} {
		body := `{"model":"gpt2","prompt":"Hello","max_tokens":50,"inputs":{"prompt":"Hello"}}`
		status, _, b := call(t, ts.Client(), "POST", ts.URL+path, body)
		if status != http.StatusGatewayTimeout && status != http.StatusRequestTimeout {
			t.Errorf("%s: status %d, want 504 or 408: %s", path, status, b)
		}
		if msg := errorMessage(t, b); !strings.Contains(msg, "timeout") {
			t.Errorf("%s: error %q", path, msg)
		}
	}
	e := s.Engine()
	if !settle(10*time.Second, func() bool { return openSessions(t, e, "gpt2") == 0 }) {
		t.Errorf("sessions left open: %d", openSessions(t, e, "gpt2"))
	}
}

// TestQueueFull: with one slot and one queue place taken, the next request is refused at once
// with 429 and Retry-After; the queued one runs when the slot frees.
func TestQueueFull(t *testing.T) {
	s, ts := newTestServer(t, Options{MaxConcurrency: 1, MaxQueue: 1, RetryAfter: 2 * time.Second})
	c := ts.Client()
	l := s.cur.limits["gpt2"]
	if err := l.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	queued := make(chan int, 1)
	go func() {
		resp, err := c.Post(ts.URL+"/v1/completions", "application/json", strings.NewReader(`{"model":"gpt2","prompt":"Hi","max_tokens":2}`))
		if err != nil {
			queued <- -1
			return
		}
		resp.Body.Close()
		queued <- resp.StatusCode
	}()
	if !settle(10*time.Second, func() bool { return l.queued() == 1 }) {
		t.Fatal("the first request never queued")
	}
	status, h, body := call(t, c, "POST", ts.URL+"/v1/completions", `{"model":"gpt2","prompt":"Hi","max_tokens":2}`)
	if status != http.StatusTooManyRequests || h.Get("Retry-After") != "2" || !strings.Contains(string(body), "rate_limit_error") {
		t.Errorf("over the limit: %d Retry-After=%q %s", status, h.Get("Retry-After"), body)
	}
	l.release()
	if got := <-queued; got != 200 {
		t.Errorf("queued request: status %d", got)
	}
	_, _, metrics := call(t, c, "GET", ts.URL+"/metrics", nil)
	for _, want := range []string{`modelrt_requests_total{api="completions",code="429",target="gpt2"} 1`, `modelrt_queue_depth{model="gpt2"} 0`, `modelrt_plugin_restarts_total{backend="native"} 0`, "modelrt_request_duration_seconds_bucket"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestAuth(t *testing.T) {
	_, ts := newTestServer(t, Options{AuthToken: "s3cret"})
	c := ts.Client()
	body := `{"model":"gpt2","prompt":"Hi","max_tokens":1}`
	if status, h, b := call(t, c, "POST", ts.URL+"/v1/completions", body); status != 401 || h.Get("WWW-Authenticate") == "" || !strings.Contains(string(b), "authentication_error") {
		t.Errorf("no token: %d %s", status, b)
	}
	if status, _, b := call(t, c, "POST", ts.URL+"/v1/completions", body, "Authorization", "Bearer s3cret-not"); status != 401 {
		t.Errorf("wrong token: %d %s", status, b)
	}
	if status, _, b := call(t, c, "GET", ts.URL+"/metrics", nil); status != 401 {
		t.Errorf("metrics without a token: %d %.100s", status, b)
	}
	if status, _, b := call(t, c, "POST", ts.URL+"/v1/completions", body, "Authorization", "Bearer s3cret"); status != 200 {
		t.Errorf("right token: %d %s", status, b)
	}
	for _, p := range []string{"/healthz", "/v2/health/ready", "/v2/health/live"} {
		if status, _, b := call(t, c, "GET", ts.URL+p, nil); status != 200 {
			t.Errorf("%s without a token: %d %s", p, status, b)
		}
	}
}

// isErrorEvent reports whether the data of a stream event is an error object ({"error": ...}).
// A substring test for "error" is not enough: a sampled completion chunk can carry the text
// "error" ({"choices":[{"text":"error",...}]}).
func isErrorEvent(data string) bool {
	var ev struct {
		Error json.RawMessage `json:"error"`
	}
	return json.Unmarshal([]byte(data), &ev) == nil && len(ev.Error) > 0 && string(ev.Error) != "null"
}

// streamCompletion starts a streamed completion and returns the response.
func streamCompletion(ctx context.Context, c *http.Client, url string, maxTokens int) (*http.Response, error) {
	body := fmt.Sprintf(`{"model":"gpt2","prompt":"Once upon a time","max_tokens":%d,"temperature":0.9,"stream":true}`, maxTokens)
	req, err := http.NewRequestWithContext(ctx, "POST", url+"/v1/completions", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	return c.Do(req)
}

// TestBackendKilledMidStream: SIGKILL the plugin while it streams; the request ends with an
// error event (no [DONE]), the plugin is restarted, and the next request succeeds.
func TestBackendKilledMidStream(t *testing.T) {
	s, ts := newTestServer(t, Options{})
	c := ts.Client()
	e := s.Engine()
	const attempts = 5
	killed := false
	for attempt := 0; attempt < attempts && !killed; attempt++ {
		resp, err := streamCompletion(context.Background(), c, ts.URL, 60)
		if err != nil {
			t.Fatal(err)
		}
		rd := bufio.NewReader(resp.Body)
		if _, err := rd.ReadString('\n'); err != nil { // the first chunk: generation is under way
			t.Fatal(err)
		}
		pid := e.Backends()[0].Pid
		p, err := os.FindProcess(pid)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Kill(); err != nil {
			t.Fatalf("kill %d: %v", pid, err)
		}
		_, data := sseData(t, rd)
		resp.Body.Close()
		switch {
		case len(data) > 0 && data[len(data)-1] == "[DONE]":
			t.Logf("attempt %d: the stream finished before the kill landed; again", attempt)
		case len(data) > 0 && isErrorEvent(data[len(data)-1]):
			killed = true
			if !strings.Contains(data[len(data)-1], "backend_unavailable") {
				t.Errorf("error event = %s", data[len(data)-1])
			}
		default:
			t.Fatalf("stream ended with neither [DONE] nor an error: %q", data)
		}
		// Wait for the restart either way, so that the next attempt kills a live process.
		if !settle(20*time.Second, func() bool { b := e.Backends()[0]; return b.State == "running" && b.Pid != pid }) {
			t.Fatalf("the backend did not come back: %+v", e.Backends())
		}
	}
	if !killed {
		t.Fatalf("no kill landed mid-stream in %d attempts", attempts)
	}
	status, _, body := call(t, c, "POST", ts.URL+"/v1/completions", `{"model":"gpt2","prompt":"Hello","max_tokens":4}`)
	if status != 200 {
		t.Errorf("after the restart: %d %s", status, body)
	}
	if e.Backends()[0].Restarts < 1 {
		t.Errorf("restarts = %d", e.Backends()[0].Restarts)
	}
	_, _, metrics := call(t, c, "GET", ts.URL+"/metrics", nil)
	if !strings.Contains(string(metrics), `modelrt_plugin_restarts_total{backend="native"}`) || strings.Contains(string(metrics), `modelrt_plugin_restarts_total{backend="native"} 0`) {
		t.Errorf("metrics do not count the restart")
	}
}

// TestConcurrentStreamsWithDisconnects: 50 streaming clients, some of which hang up at random
// points; afterwards the backend holds no session and no goroutine is left over.
func TestConcurrentStreamsWithDisconnects(t *testing.T) {
	s, ts := newTestServer(t, Options{MaxConcurrency: 4, MaxQueue: 64})
	tr := &http.Transport{}
	c := &http.Client{Transport: tr}
	// Warm up (connections, lazily started goroutines), then count.
	if resp, err := streamCompletion(context.Background(), c, ts.URL, 2); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	tr.CloseIdleConnections()
	base := settledGoroutines()

	const clients = 50
	type outcome struct {
		done, cut bool
		err       error
	}
	results := make(chan outcome, clients)
	for i := range clients {
		go func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			// Clients 0, 3, 6, ... hang up after i%5 chunks; the rest read to the end.
			cutAfter := -1
			if i%3 == 0 {
				cutAfter = i % 5
			}
			resp, err := streamCompletion(ctx, c, ts.URL, 20+i%20)
			if err != nil {
				results <- outcome{err: err}
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				results <- outcome{err: fmt.Errorf("status %d", resp.StatusCode)}
				return
			}
			sc := bufio.NewScanner(resp.Body)
			chunks := 0
			for sc.Scan() {
				line := sc.Text()
				if line == "data: [DONE]" {
					results <- outcome{done: true}
					return
				}
				if strings.HasPrefix(line, "data: ") {
					if isErrorEvent(strings.TrimPrefix(line, "data: ")) {
						results <- outcome{err: fmt.Errorf("error event: %s", line)}
						return
					}
					if chunks++; chunks > cutAfter && cutAfter >= 0 {
						cancel()
						results <- outcome{cut: true}
						return
					}
				}
			}
			results <- outcome{err: fmt.Errorf("stream ended without [DONE]: %v", sc.Err())}
		}()
	}
	done, cut := 0, 0
	for range clients {
		r := <-results
		switch {
		case r.err != nil:
			t.Error(r.err)
		case r.done:
			done++
		case r.cut:
			cut++
		}
	}
	t.Logf("%d streams finished, %d clients hung up", done, cut)
	if done == 0 || cut == 0 {
		t.Errorf("want both finished and cut streams, have %d and %d", done, cut)
	}
	// The handlers of the cut streams notice the hang-up and close their sessions.
	e := s.Engine()
	l := s.cur.limits["gpt2"]
	if !settle(20*time.Second, func() bool { return openSessions(t, e, "gpt2") == 0 && len(l.slots) == 0 && l.queued() == 0 }) {
		t.Errorf("the backend still holds %d sessions; the limiter %d slots and %d queued", openSessions(t, e, "gpt2"), len(l.slots), l.queued())
	}
	tr.CloseIdleConnections()
	if !settle(20*time.Second, func() bool { return runtime.NumGoroutine() <= base }) {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Errorf("goroutines: %d after, %d before\n%s", runtime.NumGoroutine(), base, buf[:n])
	}
}

// settledGoroutines returns the goroutine count once it has stopped falling: the goroutines of
// the warm-up's connections end a moment after CloseIdleConnections, at a time no fixed sleep
// can promise. A base taken too early would be too high and hide a leak.
func settledGoroutines() int {
	n := runtime.NumGoroutine()
	for end, still := time.Now().Add(10*time.Second), 0; still < 10 && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
		if m := runtime.NumGoroutine(); m < n {
			n, still = m, 0
		} else {
			still++
		}
	}
	return n
}

// TestSwap: a request in flight finishes on the old engine; new requests go to the new one;
// the old one closes once it is idle. The old request is held in the old engine's queue (its
// only slot taken) so that it is in flight for certain when the swap happens.
func TestSwap(t *testing.T) {
	s, ts := newTestServer(t, Options{MaxConcurrency: 1})
	c := ts.Client()
	old := s.Engine()
	next := newEngine(t)
	l := s.cur.limits["gpt2"]
	if err := l.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	inFlight := make(chan string, 1)
	go func() {
		resp, err := streamCompletion(context.Background(), c, ts.URL, 8)
		if err != nil {
			inFlight <- err.Error()
			return
		}
		defer resp.Body.Close()
		_, data := sseData(t, resp.Body)
		inFlight <- strings.Join(data, "\n")
	}()
	if !settle(10*time.Second, func() bool { return l.queued() == 1 }) {
		t.Fatal("the request never queued")
	}
	s.Swap(next)
	status, _, body := call(t, c, "POST", ts.URL+"/v1/completions", `{"model":"gpt2","prompt":"Hello","max_tokens":2}`)
	if status != 200 {
		t.Errorf("on the new engine: %d %s", status, body)
	}
	if st := old.Backends()[0].State; st != "running" {
		t.Errorf("the old engine's backend is %s with a request in flight", st)
	}
	l.release()
	if got := <-inFlight; !strings.HasSuffix(got, "[DONE]") {
		t.Errorf("the request in flight across the swap: %q", got)
	}
	if !settle(20*time.Second, func() bool { return old.Backends()[0].State == "closed" }) {
		t.Errorf("the old engine did not close: %+v", old.Backends())
	}
	if s.Engine() != next || next.Backends()[0].State != "running" {
		t.Errorf("the new engine is not serving")
	}
}

// BenchmarkCompletion: one greedy 8-token completion of the tiny GPT-2 through the HTTP API and
// the native plugin process, at concurrency 1 (cmd/loadgen measures more levels).
func BenchmarkCompletion(b *testing.B) {
	s := New(newEngine(b), Options{Logger: quietLogger()})
	ts := httptest.NewServer(s)
	defer func() {
		ts.Close()
		s.Close()
	}()
	c := ts.Client()
	body := `{"model":"gpt2","prompt":"Once upon a time","max_tokens":8,"temperature":0}`
	for b.Loop() {
		resp, err := c.Post(ts.URL+"/v1/completions", "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.ReportMetric(float64(b.N*8)/b.Elapsed().Seconds(), "tokens/s")
}
