package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelrt/modelrt/runtime/tokenizer"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

// served is a `modelrt serve` process.
type served struct {
	cmd    *exec.Cmd
	url    string
	mu     sync.Mutex
	stderr strings.Builder
	done   chan error
}

func (s *served) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

type lockedWriter struct{ s *served }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.stderr.Write(p)
}

// startServe runs `modelrt serve --listen 127.0.0.1:0 ARGS...` and reads the bound address
// from its first line of stdout. The process is killed at the end of the test if it is still
// running.
func startServe(t *testing.T, args ...string) *served {
	t.Helper()
	s := &served{done: make(chan error, 1)}
	s.cmd = exec.Command(filepath.Join(binDir, "modelrt"), append([]string{"serve", "--listen", "127.0.0.1:0"}, args...)...)
	s.cmd.Env = append(os.Environ(), "MODELRT_PLUGIN_DIR="+binDir)
	s.cmd.Stderr = lockedWriter{s}
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		io.Copy(io.Discard, out)
		s.done <- s.cmd.Wait()
	}()
	select {
	case l, ok := <-line:
		addr, found := strings.CutPrefix(l, "listening on ")
		if !ok || !found {
			t.Fatalf("serve did not start: stdout %q\n%s", l, s.log())
		}
		s.url = addr
	case <-time.After(2 * time.Minute):
		t.Fatalf("serve printed no address\n%s", s.log())
	}
	return s
}

// stop sends sig and returns the exit error.
func (s *served) stop(t *testing.T, sig os.Signal) error {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		return err
	case <-time.After(2 * time.Minute):
		t.Fatalf("serve did not exit after %v\n%s", sig, s.log())
	}
	return nil
}

func post(t *testing.T, url, body string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServeExample: an OpenAI-style completion and a KServe v2 infer call against `modelrt
// serve` running the text-and-image example; SIGTERM then stops it cleanly.
func TestServeExample(t *testing.T) {
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("t0ken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServe(t, "--config", "../../examples/pipelines/text-image-chain", "--auth-token-file", token, "--log-format", "json")
	auth := []string{"Authorization", "Bearer t0ken"}

	// What the openai Python client sends for client.completions.create(...).
	status, body := post(t, s.url+"/v1/completions", `{"model":"gpt2","prompt":"Once upon a time","max_tokens":5,"temperature":0,"seed":1,"logprobs":null,"n":1,"stream":false}`, auth...)
	var cmpl struct {
		Object  string
		Choices []struct {
			Text         string
			FinishReason string `json:"finish_reason"`
		}
		Usage struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
		}
	}
	if status != 200 || json.Unmarshal([]byte(body), &cmpl) != nil || len(cmpl.Choices) != 1 || cmpl.Usage.PromptTokens < 1 || cmpl.Usage.CompletionTokens < 1 {
		t.Fatalf("completion: %d %s\n%s", status, body, s.log())
	}
	if status, body := post(t, s.url+"/v1/completions", `{"model":"gpt2","prompt":"x"}`); status != 401 {
		t.Errorf("without the token: %d %s", status, body)
	}

	// KServe v2: decode a latent with the VAE.
	if status, body := get(t, s.url+"/v2/health/ready"); status != 200 {
		t.Errorf("ready: %d %s", status, body)
	}
	// The model's metadata says what to send: a (1, latent_channels, 2, 2) latent decodes to a
	// (1, out_channels, 2f, 2f) image.
	req, _ := http.NewRequest("GET", s.url+"/v2/models/vae", nil)
	req.Header.Set("Authorization", "Bearer t0ken")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		Parameters map[string]string `json:"parameters"`
	}
	err = json.NewDecoder(resp.Body).Decode(&meta)
	resp.Body.Close()
	lc, err1 := strconv.Atoi(meta.Parameters["latent_channels"])
	oc, err2 := strconv.Atoi(meta.Parameters["out_channels"])
	f, err3 := strconv.Atoi(meta.Parameters["downsample_factor"])
	if err != nil || err1 != nil || err2 != nil || err3 != nil {
		t.Fatalf("v2 model metadata: %v %+v", err, meta)
	}
	latent := make([]float32, lc*2*2)
	for i := range latent {
		latent[i] = float32(i%7)/7 - 0.5
	}
	infer, _ := json.Marshal(map[string]any{"inputs": []map[string]any{{"name": "latent", "shape": []int{1, lc, 2, 2}, "datatype": "FP32", "data": latent}}})
	status, body = post(t, s.url+"/v2/models/vae/infer", string(infer), auth...)
	var res struct {
		ModelName string `json:"model_name"`
		Outputs   []struct {
			Name     string
			Shape    []int64
			Datatype string
			Data     []float64
		}
	}
	if status != 200 || json.Unmarshal([]byte(body), &res) != nil || len(res.Outputs) != 1 || res.Outputs[0].Name != "image" || len(res.Outputs[0].Data) != oc*2*f*2*f {
		t.Fatalf("v2 infer: %d %.300s", status, body)
	}

	if err := s.stop(t, syscall.SIGTERM); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, s.log())
	}
	log := s.log()
	for _, want := range []string{`"msg":"http request"`, `"path":"/v2/models/vae/infer"`, `"status":401`, `"msg":"draining"`, `"msg":"stopped"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s\n%s", want, log)
		}
	}
}

// TestServeReloadAndDrain: SIGHUP with a broken configuration keeps the old one serving;
// SIGHUP with a good one swaps it in; SIGTERM lets a stream in flight finish.
func TestServeReloadAndDrain(t *testing.T) {
	src, err := os.ReadFile("../../examples/pipelines/complete-native/pipeline.hcl")
	if err != nil {
		t.Fatal(err)
	}
	model, err := filepath.Abs("../../testdata/models/gpt2-tiny")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "pipeline.hcl")
	if err := os.WriteFile(cfg, src, 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServe(t, "--config", cfg, "-var", "model_dir="+model)
	// A reload asked for the moment the address is out: SIGHUP must already be caught then.
	s.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, s, "msg=reloaded", 1)
	run := `{"inputs":{"prompt":"Hello","seed":2}}`
	if status, body := post(t, s.url+"/v1/pipelines/complete:run", run); status != 200 {
		t.Fatalf("run: %d %s\n%s", status, body, s.log())
	}

	// A broken configuration is rejected with its diagnostics; the old one serves on.
	if err := os.WriteFile(cfg, append(src, []byte("\nmodel \"broken\" {\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	s.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, s, "reload rejected", 1)
	if status, body := post(t, s.url+"/v1/pipelines/complete:run", run); status != 200 {
		t.Errorf("after a rejected reload: %d %s", status, body)
	}

	// A good one with the model renamed is swapped in.
	renamed := strings.ReplaceAll(string(src), "gpt2", "gpt2b")
	if err := os.WriteFile(cfg, []byte(renamed), 0o644); err != nil {
		t.Fatal(err)
	}
	s.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, s, "msg=reloaded", 2)
	if _, body := get(t, s.url+"/v1/models"); !strings.Contains(body, `"id":"gpt2b"`) || strings.Contains(body, `"id":"gpt2"`) {
		t.Errorf("models after the reload: %s", body)
	}

	// SIGTERM during a stream: the stream finishes, then the process exits 0.
	resp, err := http.Post(s.url+"/v1/completions", "application/json", strings.NewReader(`{"model":"gpt2b","prompt":"Hello","max_tokens":40,"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(resp.Body)
	if _, err := rd.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	rest, _ := io.ReadAll(rd)
	resp.Body.Close()
	if !strings.HasSuffix(strings.TrimSpace(string(rest)), "data: [DONE]") {
		t.Errorf("the stream in flight at SIGTERM ended with %q", rest[max(0, len(rest)-200):])
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("exit: %v\n%s", err, s.log())
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("no exit after SIGTERM\n%s", s.log())
	}
}

// waitLog waits until the server's log contains want n times.
func waitLog(t *testing.T, s *served, want string, n int) {
	t.Helper()
	end := time.Now().Add(time.Minute)
	for strings.Count(s.log(), want) < n {
		if time.Now().After(end) {
			t.Fatalf("log never said %q %d times\n%s", want, n, s.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestServeDrainDeadline: a request still running when the drain deadline passes is cancelled
// (its stream ends without [DONE]), and the process still exits 0.
//
// The request must be in flight for certain when SIGTERM lands, however the machine is timed:
// a generation that merely takes long can finish first on a fast machine, or while a loaded
// one delays the signal. So the backend process is stopped (SIGSTOP) before the request: the
// request takes its slot and waits on the backend until the deadline has passed, and the
// backend continues (SIGCONT) only once the log says so.
func TestServeDrainDeadline(t *testing.T) {
	s := startServe(t, "--config", "../../examples/pipelines/complete-native", "--shutdown-timeout", "1ms")
	backends := childPIDs(t, s.cmd.Process.Pid)
	if len(backends) == 0 {
		t.Fatalf("serve (pid %d) has no backend process", s.cmd.Process.Pid)
	}
	signalAll := func(sig syscall.Signal) {
		for _, pid := range backends {
			if err := syscall.Kill(pid, sig); err != nil && err != syscall.ESRCH {
				t.Errorf("signal %v to backend %d: %v", sig, pid, err)
			}
		}
	}
	signalAll(syscall.SIGSTOP)
	t.Cleanup(func() { signalAll(syscall.SIGCONT) }) // never leave a stopped process behind

	type reply struct {
		body string
		err  error
	}
	replies := make(chan reply, 1)
	go func() {
		body := `{"model":"gpt2","prompt":"Once upon a time","max_tokens":60,"stream":true}`
		resp, err := http.Post(s.url+"/v1/completions", "application/json", strings.NewReader(body))
		if err != nil {
			replies <- reply{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		replies <- reply{string(b), err}
	}()
	const inFlight = `modelrt_requests_in_flight{model="gpt2"} 1`
	end := time.Now().Add(time.Minute)
	for _, m := get(t, s.url+"/metrics"); !strings.Contains(m, inFlight); _, m = get(t, s.url+"/metrics") {
		if time.Now().After(end) {
			t.Fatalf("the request never took its slot: metrics lack %q\n%s", inFlight, s.log())
		}
		time.Sleep(20 * time.Millisecond)
	}

	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLog(t, s, "drain deadline passed", 1)
	signalAll(syscall.SIGCONT)
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("exit: %v\n%s", err, s.log())
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("serve did not exit after SIGTERM\n%s", s.log())
	}
	r := <-replies
	if strings.Contains(r.body, "[DONE]") {
		t.Errorf("the stream finished although the drain deadline had passed: %q (%v)", r.body, r.err)
	}
	t.Logf("the cancelled request got %q, error %v", r.body, r.err)
}

// childPIDs returns the processes whose parent is pid (Linux: /proc/PID/task/TID/children).
func childPIDs(t *testing.T, pid int) []int {
	t.Helper()
	files, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil || len(files) == 0 {
		t.Skipf("cannot list the children of pid %d (needs Linux /proc/PID/task/TID/children): %v", pid, err)
	}
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended
		}
		for _, field := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(field); err == nil {
				pids = append(pids, n)
			}
		}
	}
	return pids
}

// TestServeONNXRuntime: the onnxrt example served — a greedy completion on modelrt's export of
// gpt2-tiny reproduces PyTorch's greedy continuation of "Hello", and a KServe v2 infer call
// drives the raw ONNX graph (task graph), as an ONNX model under Triton would be called.
func TestServeONNXRuntime(t *testing.T) {
	const model = "../../testdata/models/gpt2-tiny"
	ref, err := safetensors.Open(filepath.Join(model, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	hello, _, err := ref.Int64("greedy_hello_ids")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int, len(hello)-1)
	for i, id := range hello[1:] {
		ids[i] = int(id)
	}
	want := tok.Decode(ids)

	onnx := t.TempDir()
	if _, stderr, err := modelrt(t, "export", "--model", model, "--out", onnx, "--with-past"); err != nil {
		t.Fatalf("export: %v\n%s", err, stderr)
	}
	s := startServe(t, "--config", "../../examples/pipelines/complete-onnxrt", "-var", "model_dir="+onnx)
	status, body := post(t, s.url+"/v1/completions", fmt.Sprintf(`{"model":"gpt2","prompt":"Hello","max_tokens":%d,"temperature":0}`, len(ids)))
	var r struct{ Choices []struct{ Text string } }
	if status != 200 || json.Unmarshal([]byte(body), &r) != nil || len(r.Choices) != 1 {
		t.Fatalf("completion: %d %s\n%s", status, body, s.log())
	}
	if r.Choices[0].Text != want {
		t.Errorf("onnxrt completion %q, PyTorch %q", r.Choices[0].Text, want)
	}
	infer := `{"inputs":[
	  {"name":"input_ids","datatype":"INT64","shape":[1,4],"data":[5,17,300,2]},
	  {"name":"attention_mask","datatype":"INT64","shape":[1,4],"data":[1,1,1,1]},
	  {"name":"position_ids","datatype":"INT64","shape":[1,4],"data":[0,1,2,3]}]}`
	status, body = post(t, s.url+"/v2/models/gpt2_graph/infer", infer)
	var res struct {
		Outputs []struct {
			Name  string
			Shape []int64
			Data  []float64
		}
	}
	if status != 200 || json.Unmarshal([]byte(body), &res) != nil || len(res.Outputs) != 1 || res.Outputs[0].Name != "logits" ||
		len(res.Outputs[0].Shape) != 3 || res.Outputs[0].Shape[1] != 4 || int64(len(res.Outputs[0].Data)) != 4*res.Outputs[0].Shape[2] {
		t.Errorf("v2 infer on the graph: %d %.300s", status, body)
	}
	if status, body := get(t, s.url+"/v2/models/gpt2_graph"); status != 200 || !strings.Contains(body, `"platform":"modelrt/onnxrt"`) || !strings.Contains(body, `"name":"position_ids"`) {
		t.Errorf("v2 metadata: %d %s", status, body)
	}
	if err := s.stop(t, syscall.SIGTERM); err != nil {
		t.Errorf("exit: %v", err)
	}
}
