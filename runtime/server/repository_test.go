package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/modelrt/modelrt/runtime/engine"
	"github.com/modelrt/modelrt/runtime/server/kservepb"
)

// waitUntil fails the test unless cond holds within limit (a bound on a state change, not a
// measure of speed).
func waitUntil(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	if !settle(limit, cond) {
		t.Fatalf("%s: not within %s", what, limit)
	}
}

func index(t *testing.T, ts *httptest.Server, body any, header ...string) map[string]repositoryEntry {
	t.Helper()
	code, _, out := call(t, ts.Client(), "POST", ts.URL+"/v2/repository/index", body, header...)
	if code != http.StatusOK {
		t.Fatalf("index: %d %s", code, out)
	}
	var list []repositoryEntry
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("index: %v: %s", err, out)
	}
	m := map[string]repositoryEntry{}
	for _, e := range list {
		m[e.Name] = e
	}
	return m
}

// metricValue returns the value of the series named (with its labels, as exposed), or -1.
func metricValue(t *testing.T, ts *httptest.Server, series string, header ...string) float64 {
	t.Helper()
	_, _, out := call(t, ts.Client(), "GET", ts.URL+"/metrics", nil, header...)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindSubmatch(out)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func completion(model string) map[string]any {
	return map[string]any{"model": model, "prompt": "Hello", "max_tokens": 3, "temperature": 0}
}

// TestRepositoryREST: the index lists the declared models; unloading one frees it and makes its
// requests (completions, v2 infer, pipelines over it) 409 with the way to load it, while the
// others serve; loading it again serves; unknown names are 404; the token and the metrics are
// as for the rest of the API.
func TestRepositoryREST(t *testing.T) {
	s, ts := newTestServer(t, Options{AuthToken: "s3cret"})
	c := ts.Client()
	auth := []string{"Authorization", "Bearer s3cret"}
	if code, _, _ := call(t, c, "POST", ts.URL+"/v2/repository/index", nil); code != http.StatusUnauthorized {
		t.Errorf("index without a token: %d", code)
	}
	idx := index(t, ts, nil, auth...)
	for _, name := range []string{"gpt2", "gpt2-chat", "vae"} {
		if e := idx[name]; e.State != "READY" || e.Version != "1" || e.Reason != "" {
			t.Errorf("index entry %q: %+v", name, e)
		}
	}
	code, _, out := call(t, c, "POST", ts.URL+"/v2/repository/models/gpt2/unload", nil, auth...)
	if code != http.StatusOK || !strings.Contains(string(out), `"UNAVAILABLE"`) {
		t.Fatalf("unload: %d %s", code, out)
	}
	if e := index(t, ts, "", auth...)["gpt2"]; e.State != "UNAVAILABLE" || !strings.Contains(e.Reason, "unloaded on request") {
		t.Errorf("index after unload: %+v", e)
	}
	if ready := index(t, ts, map[string]bool{"ready": true}, auth...); len(ready) != 2 || ready["gpt2"].Name != "" {
		t.Errorf("index of the ready models: %v", ready)
	}
	if n := openSessions(t, s.Engine(), "gpt2-chat"); n != 0 {
		t.Errorf("%d sessions open", n)
	}

	hint := `model "gpt2" is not loaded (unloaded on request); POST /v2/repository/models/gpt2/load loads it`
	for _, r := range []struct{ path string }{{"/v1/completions"}, {"/v2/models/gpt2/infer"}, {"/v1/pipelines/complete:run"}} {
		var body any = completion("gpt2")
		switch {
		case strings.HasPrefix(r.path, "/v2"):
			body = map[string]any{"inputs": []map[string]any{{"name": "input_ids", "datatype": "INT64", "shape": []int{1, 2}, "data": []int{464, 3290}}}}
		case strings.Contains(r.path, "pipelines"):
			body = map[string]any{"inputs": map[string]any{"prompt": "Hello"}}
		}
		code, _, out := call(t, c, "POST", ts.URL+r.path, body, auth...)
		if code != http.StatusConflict || !strings.Contains(string(out), strings.ReplaceAll(hint, `"`, `\"`)) {
			t.Errorf("%s on an unloaded model: %d %s", r.path, code, out)
		}
	}
	// The other models keep serving.
	if code, _, out := call(t, c, "POST", ts.URL+"/v1/completions", completion("gpt2-chat"), auth...); code != http.StatusOK {
		t.Errorf("completions on another model: %d %s", code, out)
	}
	if code, _, out := call(t, c, "POST", ts.URL+"/v1/pipelines/prior:run", map[string]any{"inputs": map[string]any{}}, auth...); code != http.StatusOK {
		t.Errorf("a pipeline over another model: %d %s", code, out)
	}
	if _, _, out := call(t, c, "GET", ts.URL+"/v1/models", nil, auth...); strings.Contains(string(out), `"gpt2"`) {
		t.Errorf("/v1/models lists the unloaded model: %s", out)
	}
	if code, _, out := call(t, c, "GET", ts.URL+"/v2/models/gpt2/ready", nil, auth...); code != http.StatusServiceUnavailable {
		t.Errorf("ready of an unloaded model: %d %s", code, out)
	}

	for _, op := range []string{"load", "unload"} {
		code, _, out := call(t, c, "POST", ts.URL+"/v2/repository/models/nope/"+op, nil, auth...)
		if code != http.StatusNotFound || !strings.Contains(string(out), `model \"nope\" is not declared`) {
			t.Errorf("%s of an unknown model: %d %s", op, code, out)
		}
	}
	code, _, out = call(t, c, "POST", ts.URL+"/v2/repository/models/gpt2/load", `{"parameters": {"config": "{}"}}`, auth...)
	if code != http.StatusBadRequest || !strings.Contains(string(out), "parameters.config") {
		t.Errorf("load with a config override: %d %s", code, out)
	}
	code, _, out = call(t, c, "POST", ts.URL+"/v2/repository/models/gpt2/load", "{}", auth...)
	if code != http.StatusOK || !strings.Contains(string(out), `"READY"`) {
		t.Fatalf("load: %d %s", code, out)
	}
	if code, _, out := call(t, c, "POST", ts.URL+"/v1/completions", completion("gpt2"), auth...); code != http.StatusOK {
		t.Errorf("completions after load: %d %s", code, out)
	}
	for series, want := range map[string]float64{
		`modelrt_model_loaded{model="gpt2"}`:                                1,
		`modelrt_model_unloads_total{model="gpt2",reason="request"}`:        1,
		`modelrt_model_load_seconds_count{model="gpt2",reason="request"}`:   1,
		`modelrt_model_load_seconds_count{model="vae",reason="startup"}`:    1,
		`modelrt_requests_total{api="repository",code="404",target=""}`:     2,
		`modelrt_requests_total{api="repository",code="200",target="gpt2"}`: 2,
	} {
		if got := metricValue(t, ts, series, auth...); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}

// smallBuffers is a listener whose connections have small kernel send buffers, so that a
// stream the client does not read stops the handler (and its generation) in a write.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(2048)
	}
	return c, err
}

// TestRepositoryUnloadMidStream: an unload while a streaming completion is in flight waits for
// it; meanwhile new requests for the model are 409; the stream finishes whole, the backend holds
// no session and no model, no goroutine is left, and the server keeps serving.
func TestRepositoryUnloadMidStream(t *testing.T) {
	s := New(newEngine(t), Options{Logger: quietLogger()})
	ts := httptest.NewUnstartedServer(s)
	ts.Listener = smallBuffers{ts.Listener}
	ts.Start()
	t.Cleanup(func() {
		ts.Close()
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	// The streaming client reads little at a time through a small receive buffer.
	dialer := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048) })
	}}
	slow := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
	defer slow.CloseIdleConnections()
	goroutines := settledGoroutines()

	body := `{"model": "gpt2", "prompt": "Hello", "max_tokens": 60, "n": 8, "temperature": 1, "seed": 3, "stream": true, "logprobs": 5}`
	req, _ := http.NewRequest("POST", ts.URL+"/v1/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := slow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReaderSize(resp.Body, 16)
	if _, err := rd.ReadString('\n'); err != nil { // the first event: the stream has begun
		t.Fatal(err)
	}
	unloaded := make(chan string, 1)
	go func() {
		code, _, out := call(t, ts.Client(), "POST", ts.URL+"/v2/repository/models/gpt2/unload", nil)
		unloaded <- fmt.Sprintf("%d %s", code, out)
	}()
	waitUntil(t, "UNLOADING", 30*time.Second, func() bool {
		ms, _ := s.Engine().Status("gpt2")
		return ms.State == engine.StateUnloading
	})
	if ms, _ := s.Engine().Status("gpt2"); ms.InUse != 1 {
		t.Errorf("while unloading: %+v, want the stream holding the model", ms)
	}
	if code, _, out := call(t, ts.Client(), "POST", ts.URL+"/v1/completions", completion("gpt2"), nil...); code != http.StatusConflict {
		t.Errorf("completions during the unload: %d %s", code, out)
	}
	rest, err := io.ReadAll(rd)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(strings.TrimSpace(string(rest)), "data: [DONE]") || strings.Contains(string(rest), `"error"`) {
		t.Errorf("the stream in flight did not finish whole: ...%s", tail(string(rest), 300))
	}
	if got := <-unloaded; !strings.HasPrefix(got, "200 ") || !strings.Contains(got, "UNAVAILABLE") {
		t.Errorf("unload: %s", got)
	}
	if n := openSessions(t, s.Engine(), "vae"); n != 0 {
		t.Errorf("%d sessions left open", n)
	}
	if code, _, out := call(t, ts.Client(), "POST", ts.URL+"/v1/completions", completion("gpt2-chat")); code != http.StatusOK {
		t.Errorf("the server after the unload: %d %s", code, out)
	}
	slow.CloseIdleConnections()
	ts.Client().CloseIdleConnections()
	// Connections' goroutines may linger a moment; the scheduler's loop and the request's must
	// be gone.
	if n := settledGoroutines(); n > goroutines+2 {
		t.Errorf("%d goroutines after the unload, %d before", n, goroutines)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// keepAliveConfig is one model with a short keep_alive.
const keepAliveConfig = `
backend "native" {
  plugin = "%[1]s/modelrt-native"
}
model "gpt2" {
  backend    = backend.native
  path       = "%[2]s/gpt2-tiny"
  task       = "causal-lm"
  keep_alive = "300ms"
}
`

// TestRepositoryKeepAlive: a model idle for its keep_alive is unloaded (the index says why, it
// stays listed and ready); the next completion loads it again and succeeds, and the metrics
// count the unload and the load by reason.
func TestRepositoryKeepAlive(t *testing.T) {
	e := newEngineFrom(t, keepAliveConfig)
	s := New(e, Options{Logger: quietLogger()})
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		ts.Close()
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	waitUntil(t, "idle unload", 30*time.Second, func() bool { return index(t, ts, nil)["gpt2"].State == "UNAVAILABLE" })
	if e := index(t, ts, nil)["gpt2"]; !strings.Contains(e.Reason, "keep_alive") {
		t.Errorf("index of the idle model: %+v", e)
	}
	if got := metricValue(t, ts, `modelrt_model_loaded{model="gpt2"}`); got != 0 {
		t.Errorf("modelrt_model_loaded while idle: %v", got)
	}
	if _, _, out := call(t, ts.Client(), "GET", ts.URL+"/v1/models", nil); !strings.Contains(string(out), `"gpt2"`) {
		t.Errorf("/v1/models without the idle model: %s", out)
	}
	if code, _, out := call(t, ts.Client(), "GET", ts.URL+"/v2/models/gpt2/ready", nil); code != http.StatusOK {
		t.Errorf("ready of the idle model: %d %s", code, out)
	}
	code, _, out := call(t, ts.Client(), "POST", ts.URL+"/v1/completions", completion("gpt2"))
	if code != http.StatusOK {
		t.Fatalf("completions after the idle unload: %d %s", code, out)
	}
	if got := metricValue(t, ts, `modelrt_model_load_seconds_count{model="gpt2",reason="keep_alive"}`); got != 1 {
		t.Errorf("keep_alive loads: %v, want 1", got)
	}
	if got := metricValue(t, ts, `modelrt_model_unloads_total{model="gpt2",reason="keep_alive"}`); got < 1 {
		t.Errorf("keep_alive unloads: %v", got)
	}
}

// TestRepositoryGRPC: RepositoryIndex, RepositoryModelUnload and RepositoryModelLoad through a
// Go client, behind the token; an infer on an unloaded model is FAILED_PRECONDITION with the way
// to load it; unknown models are NOT_FOUND.
func TestRepositoryGRPC(t *testing.T) {
	s, _ := newTestServer(t, Options{AuthToken: "s3cret"})
	c := startGRPC(t, s)
	ctx := withToken("s3cret")
	if _, err := c.RepositoryIndex(context.Background(), &kservepb.RepositoryIndexRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("index without a token: %v", err)
	}
	states := func(ready bool) map[string]string {
		r, err := c.RepositoryIndex(ctx, &kservepb.RepositoryIndexRequest{Ready: ready})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, e := range r.Models {
			m[e.Name] = e.State + "/" + e.Version
		}
		return m
	}
	if got := fmt.Sprint(states(false)); got != "map[gpt2:READY/1 gpt2-chat:READY/1 vae:READY/1]" {
		t.Errorf("index: %s", got)
	}
	if _, err := c.RepositoryModelUnload(ctx, &kservepb.RepositoryModelUnloadRequest{ModelName: "vae",
		Parameters: map[string]*kservepb.ModelRepositoryParameter{"unload_dependents": {ParameterChoice: &kservepb.ModelRepositoryParameter_BoolParam{BoolParam: true}}}}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(states(true)); got != "map[gpt2:READY/1 gpt2-chat:READY/1]" {
		t.Errorf("ready index after unloading vae: %s", got)
	}
	_, err := c.ModelInfer(ctx, &kservepb.ModelInferRequest{ModelName: "vae", Inputs: []*kservepb.ModelInferRequest_InferInputTensor{
		{Name: "latent", Datatype: "FP32", Shape: []int64{1, 4, 2, 3}, Contents: &kservepb.InferTensorContents{Fp32Contents: make([]float32, 24)}}}})
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "POST /v2/repository/models/vae/load") {
		t.Errorf("infer on an unloaded model: %v", err)
	}
	if r, err := c.ModelReady(ctx, &kservepb.ModelReadyRequest{Name: "vae"}); err != nil || r.Ready {
		t.Errorf("ModelReady of an unloaded model: %v %v", r, err)
	}
	_, err = c.RepositoryModelLoad(ctx, &kservepb.RepositoryModelLoadRequest{ModelName: "nope"})
	if st := status.Convert(err); st.Code() != codes.NotFound || !strings.Contains(st.Message(), `"nope"`) {
		t.Errorf("load of an unknown model: %v", err)
	}
	_, err = c.RepositoryModelLoad(ctx, &kservepb.RepositoryModelLoadRequest{ModelName: "vae",
		Parameters: map[string]*kservepb.ModelRepositoryParameter{"config": {ParameterChoice: &kservepb.ModelRepositoryParameter_StringParam{StringParam: "{}"}}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("load with a config override: %v", err)
	}
	if _, err := c.RepositoryModelLoad(ctx, &kservepb.RepositoryModelLoadRequest{ModelName: "vae"}); err != nil {
		t.Fatal(err)
	}
	if got := states(false)["vae"]; got != "READY/1" {
		t.Errorf("vae after load: %s", got)
	}
	if _, err := c.ModelInfer(ctx, &kservepb.ModelInferRequest{ModelName: "vae", Inputs: []*kservepb.ModelInferRequest_InferInputTensor{
		{Name: "latent", Datatype: "FP32", Shape: []int64{1, 4, 2, 3}, Contents: &kservepb.InferTensorContents{Fp32Contents: make([]float32, 24)}}}}); err != nil {
		t.Errorf("infer after load: %v", err)
	}
}

// FuzzRepositoryRequest: whatever the body, the decoder of the repository routes does not
// panic, and refuses with a 400 naming the problem or returns a request whose parameters are
// the ones the operation takes.
func FuzzRepositoryRequest(f *testing.F) {
	for _, seed := range []string{"", "{}", `{"ready": true}`, `{"parameters": {}}`, `{"parameters": {"unload_dependents": true}}`,
		`{"parameters": {"config": "{}"}}`, `{"parameters": {"file:1/model.onnx": "AAAA"}}`, `{"ready": 1}`, `[1]`, `{} {}`, `{"x": 1}`, "\x00"} {
		for _, op := range []string{opIndex, opLoad, opUnload} {
			f.Add(op, []byte(seed))
		}
	}
	f.Fuzz(func(t *testing.T, op string, body []byte) {
		req, err := parseRepositoryRequest(op, body)
		if err != nil {
			var he *httpError
			if !errors.As(err, &he) || he.status != http.StatusBadRequest || he.msg == "" {
				t.Fatalf("error %v is not a 400 with a message", err)
			}
			return
		}
		if op == opIndex && req.Parameters != nil {
			t.Fatalf("index accepted parameters: %s", body)
		}
		for k := range req.Parameters {
			if op != opUnload || k != "unload_dependents" {
				t.Fatalf("%s accepted parameter %q", op, k)
			}
		}
	})
}
