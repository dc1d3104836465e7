package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelrt/modelrt/internal/plugintest"
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
	if err := plugintest.Build(dir, plugintest.Native); err != nil {
		fmt.Fprintln(os.Stderr, err)
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
model "gpt2-chat" {
  backend       = backend.native
  path          = "%[2]s/gpt2-tiny"
  task          = "causal-lm"
  chat_template = "{{range .Messages}}{{.Role}}> {{.Content}}{{$.EOS}}{{end}}bot>"
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
	return newEngineFrom(t, testConfig)
}

// newEngineFrom starts the engine of a configuration whose %[1]s is the plugin directory, %[2]s
// the fixture models and %[3]s a temporary directory.
func newEngineFrom(t testing.TB, config string) *engine.Engine {
	t.Helper()
	models, err := filepath.Abs("../../testdata/models")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "serve.hcl")
	if err := os.WriteFile(path, fmt.Appendf(nil, config, binDir, models, t.TempDir()), 0o644); err != nil {
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
