// Command faults measures how a `modelrt serve` binary answers the requests of issue 18: for each
// fault it starts the daemon afresh on a loopback port (testdata's tiny GPT-2 and VAE
// configurations; run it from the repository's root),
// sends the request, and reports the status, the time to the answer, and the peak RSS of the
// daemon's own process (VmHWM; the plugin processes are not counted). It is how the before and
// after figures of docs/server.md ("Limits") were taken:
//
//	go build -o /tmp/after/ ./cmd/modelrt ./plugins/native
//	go run ./scripts/faults -bin /tmp/after/modelrt
//
// Loopback only, bounded counts; each request has a client timeout (-timeout).
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"flag"
	"fmt"
	"image"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The fault's configurations, from testdata: the tiny GPT-2 and the tiny VAE.
const (
	gpt2Config = "testdata/pipelines/good/complete-native"
	vaeConfig  = "testdata/pipelines/good/vae-reconstruct"
)

var (
	bin     = flag.String("bin", "", "the modelrt binary (modelrt-native beside it)")
	timeout = flag.Duration("timeout", 2*time.Minute, "client timeout of one request")
	only    = flag.String("only", "", "run only the faults whose name contains this")
	digits  = flag.Int("digits", 2_000_000, "digits of the long-number fault (the issue's figure is for 7 million)")
)

// daemon is a running `modelrt serve`.
type daemon struct {
	cmd  *exec.Cmd
	addr string
}

// start runs the daemon on config in dir (where an image.save stage writes).
func start(dir, config string, token bool) (*daemon, error) {
	config, err := filepath.Abs(config)
	if err != nil {
		return nil, err
	}
	args := []string{"serve", "--config", config, "--listen", "127.0.0.1:0", "--log-level", "error",
		"--plugin-dir", filepath.Dir(*bin)}
	if token {
		args = append(args, "--auth-token-file", filepath.Join(dir, "token"))
	}
	cmd := exec.Command(*bin, args...)
	cmd.Dir = dir
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on http://")
	if err != nil || !ok {
		cmd.Process.Kill()
		return nil, fmt.Errorf("no address from the daemon: %q %v", line, err)
	}
	go io.Copy(io.Discard, out)
	return &daemon{cmd: cmd, addr: addr}, nil
}

func (d *daemon) stop() {
	d.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-done
	}
}

// status reads a field of /proc/PID/status in kB.
func (d *daemon) status(field string) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func (d *daemon) fds() int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.cmd.Process.Pid))
	return len(ents)
}

// post sends one JSON request and returns the status (0: no answer) and the body's size.
func (d *daemon) post(path, body string) (int, int64, error) {
	c := &http.Client{Timeout: *timeout}
	resp, err := c.Post("http://"+d.addr+path, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	n, _ := io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, n, nil
}

type fault struct {
	name   string
	config string
	token  bool
	run    func(d *daemon) string // what happened
}

func timed(d *daemon, path, body string) string {
	t0 := time.Now()
	status, n, err := d.post(path, body)
	s := fmt.Sprintf("status %d, %d bytes, %.2fs", status, n, time.Since(t0).Seconds())
	if err != nil {
		s += fmt.Sprintf(" (%v)", err)
	}
	return s
}

func pngBody(w, h int) string {
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		panic(err)
	}
	return fmt.Sprintf(`{"inputs":{"image":{"content_type":"image/png","data":"%s"}}}`, base64.StdEncoding.EncodeToString(buf.Bytes()))
}

func idsBody(b, t int) string {
	ids := strings.TrimSuffix(strings.Repeat("464,", b*t), ",")
	return fmt.Sprintf(`{"inputs":[{"name":"input_ids","datatype":"INT64","shape":[%d,%d],"data":[%s]}]}`, b, t, ids)
}

var faults = []fault{
	{"2: 200 bodies that never arrive (401 path)", gpt2Config, true, func(d *daemon) string {
		const n = 200
		before := d.fds()
		answered := make(chan bool, n)
		var conns []net.Conn
		for range n {
			c, err := net.Dial("tcp", d.addr)
			if err != nil {
				return err.Error()
			}
			conns = append(conns, c)
			fmt.Fprintf(c, "POST /v1/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 200000\r\n\r\n{", d.addr)
			go func() {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err := http.ReadResponse(bufio.NewReader(c), nil)
				answered <- err == nil
			}()
		}
		got := 0
		for range n {
			if <-answered {
				got++
			}
		}
		held := d.fds() - before
		for _, c := range conns {
			c.Close()
		}
		return fmt.Sprintf("%d of %d answered within 5s; %d connections still held by the daemon after 5s", got, n, held)
	}},
	{"3: 1024x1024 PNG (4 KB) to the VAE pipeline", vaeConfig, false, func(d *daemon) string {
		return timed(d, "/v1/pipelines/reconstruct:run", pngBody(1024, 1024))
	}},
	{"3: 8191x8191 PNG to the VAE pipeline", vaeConfig, false, func(d *daemon) string {
		return timed(d, "/v1/pipelines/reconstruct:run", pngBody(8191, 8191))
	}},
	{"5: v2 input_ids [8,64] (JSON logits)", gpt2Config, false, func(d *daemon) string {
		return timed(d, "/v2/models/gpt2/infer", idsBody(8, 64))
	}},
	{"5: v2 [4,64] with binary_data_output", gpt2Config, false, func(d *daemon) string {
		return timed(d, "/v2/models/gpt2/infer", strings.TrimSuffix(idsBody(4, 64), "}")+`,"parameters":{"binary_data_output":true}}`)
	}},
	{"5: three clients that do not read v2 [8,64]", gpt2Config, false, func(d *daemon) string {
		body := idsBody(8, 64)
		var conns []net.Conn
		for range 3 {
			c, err := net.Dial("tcp", d.addr)
			if err != nil {
				return err.Error()
			}
			conns = append(conns, c)
			fmt.Fprintf(c, "POST /v2/models/gpt2/infer HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", d.addr, len(body), body)
		}
		time.Sleep(20 * time.Second)
		rss := d.status("VmRSS")
		for _, c := range conns {
			c.Close()
		}
		return "RSS after 20s with the three unread: " + rss
	}},
	{"6: a pipeline number input of many digits", gpt2Config, false, func(d *daemon) string {
		return timed(d, "/v1/pipelines/complete:run", `{"inputs":{"prompt":"Hi","seed":`+strings.Repeat("7", *digits)+`}}`)
	}},
}

func main() {
	flag.Parse()
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "faults: -bin is required")
		os.Exit(2)
	}
	dir, err := os.MkdirTemp("", "modelrt-faults-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("s3cret\n"), 0o600); err != nil {
		panic(err)
	}
	for _, f := range faults {
		if !strings.Contains(f.name, *only) {
			continue
		}
		d, err := start(dir, f.config, f.token)
		if err != nil {
			fmt.Printf("%-45s | cannot start: %v\n", f.name, err)
			continue
		}
		base := d.status("VmHWM")
		what := f.run(d)
		fmt.Printf("%-45s | %s | daemon peak RSS %s (at start %s)\n", f.name, what, d.status("VmHWM"), base)
		d.stop()
	}
}
