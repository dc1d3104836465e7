//go:build ignore

// Command measure runs `modelrt serve` with the native backend on the test models and sends it
// the requests of issue 18, printing for each the HTTP status, the time, and the peak resident
// set (VmHWM) of the host and of the plugin process:
//
//   - oversized: six POST /v2/models/gpt2/infer with input_ids [1,200000] (a 64-position GPT-2
//     with a 50257-token vocabulary: 40 GB of logits), then /healthz, a small request, and
//     whether /healthz comes back to 200 within 40 s;
//   - cancelled: six clients, one after another, POST a [1,4,S,S] latent to
//     /v2/models/vae/infer (--max-concurrency 2) and hang up after a second; how long the
//     plugin keeps computing after the last hang-up (its CPU time still growing), and the peaks.
//
// Run it from the repository root on a directory holding modelrt and modelrt-native built from
// the revision to measure:
//
//	go build -o /tmp/after/ ./cmd/modelrt ./plugins/native
//	go run scripts/faults/measure.go -bin /tmp/after [-backend-config 'max_image_scale = 64']
//
// Linux only (/proc). It starts one server per scenario and stops it afterwards.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

var (
	bin           = flag.String("bin", "", "directory with modelrt and modelrt-native")
	models        = flag.String("models", "testdata/models", "directory of the test models")
	backendConfig = flag.String("backend-config", "", "lines for the native backend's config block (e.g. 'max_image_scale = 64')")
	latentSide    = flag.Int("latent", 128, "side of the latents of the cancelled scenario")
	clients       = flag.Int("clients", 6, "clients of the cancelled scenario")
	hangUp        = flag.Duration("hang-up", time.Second, "when the clients of the cancelled scenario hang up")
	scenario      = flag.String("scenario", "oversized,cancelled", "scenarios to run, comma-separated")
)

func main() {
	flag.Parse()
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "measure: -bin is required")
		os.Exit(2)
	}
	for _, sc := range strings.Split(*scenario, ",") {
		var err error
		switch sc {
		case "oversized":
			err = oversized()
		case "cancelled":
			err = cancelled()
		default:
			err = fmt.Errorf("unknown scenario %q", sc)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "measure: %s: %v\n", sc, err)
			os.Exit(1)
		}
	}
}

// server is one `modelrt serve` process.
type server struct {
	cmd  *exec.Cmd
	url  string
	http *http.Client
}

func startServer() (*server, error) {
	abs, err := filepath.Abs(*models)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "modelrt-measure")
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`backend "native" {
  plugin = "modelrt-native"
  config {
    threads = 2
    %s
  }
}
model "gpt2" {
  backend = backend.native
  path    = %q
  task    = "causal-lm"
}
model "vae" {
  backend = backend.native
  path    = %q
  task    = "vae"
}
`, *backendConfig, filepath.Join(abs, "gpt2-tiny"), filepath.Join(abs, "vae-tiny"))
	if err := os.WriteFile(filepath.Join(dir, "serve.hcl"), []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(filepath.Join(*bin, "modelrt"), "serve", "--config", filepath.Join(dir, "serve.hcl"),
		"--listen", addr, "--plugin-dir", *bin, "--max-concurrency", "2", "--max-body-bytes", "67108864")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, url: "http://" + addr, http: &http.Client{}}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if st, _, _ := s.get("/healthz"); st == 200 {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, errors.New("the server was not healthy within a minute")
		}
	}
}

func (s *server) stop() {
	s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

func (s *server) get(path string) (int, []byte, error) {
	resp, err := s.http.Get(s.url + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes(), nil
}

func (s *server) post(ctx context.Context, path string, body []byte) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", s.url+path, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	msg := strings.TrimSpace(b.String())
	if len(msg) > 160 {
		msg = msg[:160] + "…"
	}
	return resp.StatusCode, msg, nil
}

// pluginPid finds the modelrt-native child of the server.
func (s *server) pluginPid() int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(data, ')')
		f := strings.Fields(string(data[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(s.cmd.Process.Pid) && bytes.Contains(data[:i], []byte("modelrt-native")) {
			return pid
		}
	}
	return 0
}

// peak is VmHWM of pid in MiB, or "-" for a process that is gone.
func peak(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "-"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return fmt.Sprintf("%.0f MiB", float64(kb)/1024)
		}
	}
	return "-"
}

// cpu is the CPU time of pid (user + system), 0 for a process that is gone.
func cpu(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}

func idsJSON(n int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"inputs":[{"name":"input_ids","datatype":"INT64","shape":[1,%d],"data":[`, n)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('0')
	}
	b.WriteString(`]}]}`)
	return b.Bytes()
}

func latentJSON(side int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"inputs":[{"name":"latent","datatype":"FP32","shape":[1,4,%d,%d],"data":[`, side, side)
	for i := 0; i < 4*side*side; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('0')
	}
	b.WriteString(`]}]}`)
	return b.Bytes()
}

func healthState(body []byte) string {
	var h struct {
		Status   string `json:"status"`
		Backends []struct {
			State         string `json:"state"`
			CrashesInARow int    `json:"crashes_in_a_row"`
		} `json:"backends"`
	}
	if json.Unmarshal(body, &h) != nil || len(h.Backends) == 0 {
		return string(body)
	}
	return fmt.Sprintf("%s, backend %s, %d crashes in a row", h.Status, h.Backends[0].State, h.Backends[0].CrashesInARow)
}

func oversized() error {
	s, err := startServer()
	if err != nil {
		return err
	}
	defer s.stop()
	body := idsJSON(200000)
	fmt.Printf("## oversized: POST /v2/models/gpt2/infer, input_ids [1,200000] (%d KB of JSON)\n", len(body)>>10)
	fmt.Println("| request | status | time | plugin pid | plugin VmHWM | host VmHWM | answer |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for i := 1; i <= 6; i++ {
		pid := s.pluginPid()
		t0 := time.Now()
		st, msg, err := s.post(context.Background(), "/v2/models/gpt2/infer", body)
		if err != nil {
			msg = err.Error()
		}
		el := time.Since(t0)
		fmt.Printf("| %d | %d | %v | %d → %d | %s | %s | %s |\n", i, st, el.Round(time.Millisecond), pid, s.pluginPid(), peak(pid), peak(s.cmd.Process.Pid), msg)
	}
	st, hb, _ := s.get("/healthz")
	fmt.Printf("\n/healthz after: %d (%s)\n", st, healthState(hb))
	small := []byte(`{"inputs":[{"name":"latent","datatype":"FP32","shape":[1,4,2,2],"data":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}]}`)
	st2, msg, _ := s.post(context.Background(), "/v2/models/vae/infer", small)
	fmt.Printf("a small vae request after: %d %s\n", st2, msg)
	t0 := time.Now()
	for time.Since(t0) < 40*time.Second {
		if st, _, _ := s.get("/healthz"); st == 200 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	st, hb, _ = s.get("/healthz")
	fmt.Printf("/healthz %v later: %d (%s)\n\n", time.Since(t0).Round(100*time.Millisecond), st, healthState(hb))
	return nil
}

func cancelled() error {
	s, err := startServer()
	if err != nil {
		return err
	}
	defer s.stop()
	pid := s.pluginPid()
	body := latentJSON(*latentSide)
	fmt.Printf("## cancelled: %d clients, one after another, POST a [1,4,%d,%d] latent to /v2/models/vae/infer (--max-concurrency 2) and hang up after %v\n",
		*clients, *latentSide, *latentSide, *hangUp)
	cpu0 := cpu(pid)
	// One after another: each client hangs up, then the next one comes. The server never has
	// more than one of them in flight, so a plugin that computes on for abandoned calls runs
	// up to all of them at once, whatever --max-concurrency says.
	statuses := map[string]int{}
	t0 := time.Now()
	for i := 0; i < *clients; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), *hangUp)
		st, msg, err := s.post(ctx, "/v2/models/vae/infer", body)
		cancel()
		key := strconv.Itoa(st) + " " + msg
		if err != nil {
			key = "client hung up"
		}
		statuses[key]++
	}
	hung := time.Since(t0)
	// The plugin is idle once its CPU time stops growing (under 20 ms in a second).
	last, idleAt := cpu(pid), time.Duration(0)
	for time.Since(t0) < 5*time.Minute {
		time.Sleep(time.Second)
		now := cpu(pid)
		if now-last < 20*time.Millisecond {
			idleAt = time.Since(t0)
			break
		}
		last = now
	}
	fmt.Println("| clients | answers | plugin busy after the hang-up | plugin CPU | plugin VmHWM | host VmHWM |")
	fmt.Println("|---|---|---|---|---|---|")
	var answers []string
	for k, n := range statuses {
		answers = append(answers, fmt.Sprintf("%d× %s", n, k))
	}
	busy := "more than 5 min"
	if idleAt > 0 {
		busy = (idleAt - hung - time.Second).Round(100 * time.Millisecond).String()
		if idleAt-hung < 1100*time.Millisecond { // idle at the first look
			busy = "< 1 s"
		}
	}
	fmt.Printf("| %d | %s | %s | %v | %s | %s |\n\n", *clients, strings.Join(answers, "; "), busy, (cpu(pid) - cpu0).Round(10*time.Millisecond), peak(pid), peak(s.cmd.Process.Pid))
	return nil
}
