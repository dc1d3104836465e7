package plugin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelrt/modelrt/internal/plugintest"
	"github.com/modelrt/modelrt/sdk"
)

// binDir holds the plugin binaries built once by TestMain from testdata/plugins.
var binDir string

func TestMain(m *testing.M) {
	if os.Getenv("MODELRT_TEST_HOST") != "" {
		os.Exit(hostMain())
	}
	dir, err := os.MkdirTemp("", "modelrt-plugin-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	if err := plugintest.Build(dir, plugintest.TestBackend, plugintest.OtherVersion); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func testConfig(t testing.TB) Config {
	return Config{
		Name: "testbackend", Path: filepath.Join(binDir, Prefix+"testbackend"),
		StartTimeout: 10 * time.Second, CallTimeout: 20 * time.Second,
		RestartBackoff: 20 * time.Millisecond, MaxRestarts: 3,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func startTest(t *testing.T, cfg Config) *Plugin {
	t.Helper()
	p, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func load(t *testing.T, p *Plugin, name string, opts map[string]string) {
	t.Helper()
	if _, err := p.LoadModel(context.Background(), &sdk.LoadModelRequest{Name: name, Path: t.TempDir(), Task: sdk.TaskGraph, Options: opts}); err != nil {
		t.Fatalf("LoadModel %s: %v", name, err)
	}
}

func echo(ctx context.Context, p *Plugin, params map[string]string) (*sdk.InferResponse, error) {
	return p.Infer(ctx, &sdk.InferRequest{Model: "echo", Params: params,
		Inputs: map[string]*sdk.Tensor{"x": sdk.FromFloat32([]int64{2}, []float32{1.5, -2})}})
}

func TestRoundTrip(t *testing.T) {
	p := startTest(t, testConfig(t))
	if d := p.Description(); d.Name != "testbackend" || d.ProtocolVersion != sdk.ProtocolVersion || len(d.ConfigSchema.Attributes) != 2 {
		t.Fatalf("Description = %+v", d)
	}
	load(t, p, "echo", nil)
	r, err := echo(context.Background(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Outputs["x"].Float32s()
	if err != nil || len(got) != 2 || got[0] != 1.5 || got[1] != -2 {
		t.Fatalf("echo = %v, %v", got, err)
	}
	// Sessions keep state in the backend, isolated from each other.
	load(t, p, "counter", nil)
	ctx := context.Background()
	s1, err := p.OpenSession(ctx, &sdk.OpenSessionRequest{Model: "counter", BatchSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := p.OpenSession(ctx, &sdk.OpenSessionRequest{Model: "counter", BatchSize: 1})
	add := func(s string, v int64) int64 {
		r, err := p.Infer(ctx, &sdk.InferRequest{Model: "counter", Session: s, Inputs: map[string]*sdk.Tensor{"x": sdk.FromInt64([]int64{1}, []int64{v})}})
		if err != nil {
			t.Fatal(err)
		}
		v2, _ := r.Outputs["total"].Int64s()
		return v2[0]
	}
	add(s1.Session, 3)
	add(s2.Session, 100)
	if got := add(s1.Session, 4); got != 7 {
		t.Errorf("session 1 total = %d, want 7", got)
	}
	if _, err := p.CloseSession(ctx, &sdk.CloseSessionRequest{Session: s1.Session}); err != nil {
		t.Fatal(err)
	}
	_, err = p.Infer(ctx, &sdk.InferRequest{Model: "counter", Session: s1.Session, Inputs: map[string]*sdk.Tensor{"x": sdk.FromInt64([]int64{1}, []int64{1})}})
	if sdk.CodeOf(err) != sdk.CodeNotFound {
		t.Errorf("closed session: err = %v, want NotFound", err)
	}
	// Unknown model → NotFound; config reaches the backend.
	if _, err := p.Infer(ctx, &sdk.InferRequest{Model: "nope"}); sdk.CodeOf(err) != sdk.CodeNotFound {
		t.Errorf("unknown model: err = %v, want NotFound", err)
	}
	if _, err := p.Configure(ctx, &sdk.ConfigureRequest{Config: []byte(`{"greeting":"hi"}`)}); err != nil {
		t.Fatal(err)
	}
	st, err := p.Stats(ctx, &sdk.StatsRequest{})
	if err != nil || len(st.Models) != 2 || st.OpenSessions != 1 {
		t.Errorf("Stats = %+v, %v; want 2 models, 1 open session", st, err)
	}
}

func TestPanicBecomesInternal(t *testing.T) {
	p := startTest(t, testConfig(t))
	load(t, p, "echo", nil)
	_, err := echo(context.Background(), p, map[string]string{"action": "panic"})
	if sdk.CodeOf(err) != sdk.CodeInternal || !strings.Contains(err.Error(), "asked to panic") {
		t.Fatalf("err = %v, want Internal naming the panic", err)
	}
	if _, err := echo(context.Background(), p, nil); err != nil {
		t.Fatalf("after a panic the plugin must keep serving: %v", err)
	}
	if p.Restarts() != 0 {
		t.Errorf("a recovered panic restarted the plugin")
	}
}

func TestStartFailures(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "modelrt-missing"), "not found"},
		{"not executable", write("modelrt-noexec", "#!/bin/sh\n", 0o644), "not executable"},
		{"directory", dir, "directory"},
		{"junk", write("modelrt-junk", "#!/bin/sh\necho 'hello, I am not a plugin'\nexec sleep 30\n", 0o755), "modelrt backend plugin"},
		{"exits at once", write("modelrt-exits", "#!/bin/sh\nexit 3\n", 0o755), "modelrt backend plugin"},
		{"other protocol", filepath.Join(binDir, Prefix+"otherversion"), "Plugin version: 2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Path, cfg.StartTimeout = tc.path, 3*time.Second
			start := time.Now()
			p, err := Start(context.Background(), cfg)
			if err == nil {
				p.Close()
				t.Fatal("Start succeeded, want an error")
			}
			if !errors.Is(err, ErrStart) || !strings.Contains(err.Error(), tc.path) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant ErrStart naming %s and %q", err, tc.path, tc.want)
			}
			if tc.name == "other protocol" && !strings.Contains(err.Error(), "Client versions: [1]") {
				t.Errorf("err = %v, want both versions named", err)
			}
			if d := time.Since(start); d > cfg.StartTimeout+5*time.Second {
				t.Errorf("Start took %v, beyond the start timeout %v", d, cfg.StartTimeout)
			}
		})
	}
	// The host goes on with the other plugins: discovery lists the broken ones with errors.
	infos := Probe(context.Background(), Discover([]string{dir, binDir}), testConfig(t))
	byName := map[string]Info{}
	for _, in := range infos {
		byName[in.Name] = in
	}
	if in := byName["testbackend"]; in.Err != nil || in.Desc == nil || in.Desc.Name != "testbackend" {
		t.Errorf("testbackend probe = %+v", in)
	}
	for _, n := range []string{"junk", "exits", "noexec", "otherversion"} {
		if byName[n].Err == nil {
			t.Errorf("probe of %s: no error", n)
		}
	}
}

func TestCrashDuringCallRestarts(t *testing.T) {
	p := startTest(t, testConfig(t))
	load(t, p, "echo", nil)
	pid := p.Pid()
	errc := make(chan error, 1)
	go func() {
		_, err := echo(context.Background(), p, map[string]string{"action": "hang"})
		errc <- err
	}()
	time.Sleep(200 * time.Millisecond)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrCrashed) || !strings.Contains(err.Error(), "died during Infer") {
			t.Fatalf("err = %v, want ErrCrashed", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the call did not return after the plugin was killed")
	}
	// The next call waits for the restart and finds the model reloaded.
	if _, err := echo(context.Background(), p, nil); err != nil {
		t.Fatalf("call after restart: %v", err)
	}
	if p.Pid() == pid || p.Restarts() != 1 {
		t.Errorf("pid %d → %d, restarts %d; want a new process and 1 restart", pid, p.Pid(), p.Restarts())
	}
}

// A plugin that keeps crashing is marked failed (calls fail at once, naming the cause), but the
// host keeps restarting it with backoff: once the cause is gone it serves again by itself,
// without a reload of the host.
func TestKeepsCrashingIsMarkedFailedThenRecovers(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxRestarts = 2
	p := startTest(t, cfg)
	flag := filepath.Join(t.TempDir(), "crash")
	load(t, p, "echo", map[string]string{"crash_if_exists": flag})
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Every restart now dies while reloading the model.
	_, err := echo(context.Background(), p, map[string]string{"action": "crash"})
	if !errors.Is(err, ErrCrashed) {
		t.Fatalf("err = %v, want ErrCrashed", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for p.State() != StateFailed && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	_, err = echo(context.Background(), p, nil)
	if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "reload model") || !strings.Contains(err.Error(), "retrying") {
		t.Fatalf("state %v, err = %v; want ErrFailed with the reload error and the next try", p.State(), err)
	}
	st := p.Status()
	if st.State != StateFailed || st.CrashesInARow <= cfg.MaxRestarts || !strings.Contains(st.LastError, "reload model") {
		t.Errorf("Status() = %+v; want failed, more than %d crashes in a row, the reload error", st, cfg.MaxRestarts)
	}
	// The cause goes away: a later attempt succeeds and the plugin serves again.
	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(MaxRestartBackoff + 20*time.Second)
	for p.State() != StateRunning && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := echo(context.Background(), p, nil); err != nil {
		t.Fatalf("state %v after the cause went away: echo: %v", p.State(), err)
	}
	if st := p.Status(); st.LastError != "" || st.Restarts < 1 {
		t.Errorf("Status() after recovery = %+v; want no error and a restart counted", st)
	}
}

func TestHangingCallDeadline(t *testing.T) {
	cfg := testConfig(t)
	cfg.CallTimeout = 300 * time.Millisecond
	p := startTest(t, cfg)
	load(t, p, "echo", nil)
	_, err := echo(context.Background(), p, map[string]string{"action": "hang"})
	if sdk.CodeOf(err) != sdk.CodeDeadlineExceeded || !strings.Contains(err.Error(), "call timeout") {
		t.Fatalf("err = %v, want DeadlineExceeded naming the call timeout", err)
	}
	// Cancellation propagates too.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err = echo(ctx, p, map[string]string{"action": "hang"})
	if sdk.CodeOf(err) != sdk.CodeCanceled {
		t.Fatalf("err = %v, want Canceled", err)
	}
	if _, err := echo(context.Background(), p, nil); err != nil || p.Restarts() != 0 {
		t.Fatalf("after a deadline the plugin must serve without a restart: %v (restarts %d)", err, p.Restarts())
	}
}

func TestMalformedTensorsRefusedByHost(t *testing.T) {
	p := startTest(t, testConfig(t))
	load(t, p, "echo", nil)
	for name, tt := range map[string]*sdk.Tensor{
		"size mismatch": {DType: sdk.Float32, Shape: []int64{3}, Data: make([]byte, 8)},
		"unknown dtype": {DType: "complex128", Shape: []int64{1}, Data: make([]byte, 16)},
		"absurd shape":  {DType: sdk.Float32, Shape: []int64{1 << 40, 1 << 40}, Data: nil},
		"negative dim":  {DType: sdk.Float32, Shape: []int64{-1}, Data: nil},
	} {
		_, err := p.Infer(context.Background(), &sdk.InferRequest{Model: "echo", Inputs: map[string]*sdk.Tensor{"x": tt}})
		if sdk.CodeOf(err) != sdk.CodeInvalidArgument {
			t.Errorf("%s: err = %v, want InvalidArgument", name, err)
		}
	}
}

// hostMain runs when the test binary is re-executed as a host process: it starts two plugins,
// prints their pids, and then exits as told by MODELRT_TEST_HOST.
func hostMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cfg := Config{Name: "testbackend", Path: os.Getenv("MODELRT_TEST_PLUGIN"), Logger: slog.New(slog.DiscardHandler)}
	var ps []*Plugin
	for range 2 {
		p, err := Start(ctx, cfg)
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		ps = append(ps, p)
		fmt.Println("pid", p.Pid())
	}
	fmt.Println("ready")
	defer func() {
		for _, p := range ps {
			p.Close()
		}
	}()
	if os.Getenv("MODELRT_TEST_HOST") == "exit" {
		// Exit only when the test says so: it first checks that both plugins run.
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		return 0
	}
	<-ctx.Done()
	return 0
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// Field 3 is the state; a zombie has exited and only waits to be reaped by init.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

func TestNoOrphansWhenHostExits(t *testing.T) {
	for _, how := range []string{"exit", "SIGTERM", "SIGINT", "SIGKILL"} {
		t.Run(how, func(t *testing.T) {
			mode := "wait"
			if how == "exit" {
				mode = "exit"
			}
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "MODELRT_TEST_HOST="+mode, "MODELRT_TEST_PLUGIN="+filepath.Join(binDir, Prefix+"testbackend"))
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			in, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var pids []int
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				if len(f) == 2 && f[0] == "pid" {
					n, _ := strconv.Atoi(f[1])
					pids = append(pids, n)
				}
				if sc.Text() == "ready" {
					break
				}
			}
			if len(pids) != 2 {
				cmd.Process.Kill()
				t.Fatalf("host reported pids %v, want 2", pids)
			}
			for _, pid := range pids {
				if !alive(pid) {
					t.Fatalf("plugin %d not running before the host stops", pid)
				}
			}
			switch how {
			case "exit":
				fmt.Fprintln(in, "exit")
			case "SIGTERM":
				cmd.Process.Signal(syscall.SIGTERM)
			case "SIGINT":
				cmd.Process.Signal(syscall.SIGINT)
			case "SIGKILL":
				cmd.Process.Kill()
			}
			go func() { _, _ = bufio.NewReader(out).WriteTo(devNull{}) }()
			cmd.Wait()
			deadline := time.Now().Add(5 * time.Second)
			for {
				var left []int
				for _, pid := range pids {
					if alive(pid) {
						left = append(left, pid)
					}
				}
				if len(left) == 0 {
					return
				}
				if time.Now().After(deadline) {
					for _, pid := range left {
						syscall.Kill(pid, syscall.SIGKILL)
					}
					t.Fatalf("plugin processes %v outlived the host (%s)", left, how)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

type devNull struct{}

func (devNull) Write(p []byte) (int, error) { return len(p), nil }

// The logits row of a decode step comes back through the shared-memory segment, from every
// process the plugin has had, and byte-identical to the gRPC path.
func TestSharedMemoryTransport(t *testing.T) {
	logits := func(p *Plugin) []float32 {
		t.Helper()
		r, err := p.Infer(context.Background(), &sdk.InferRequest{Model: "logits",
			Inputs: map[string]*sdk.Tensor{"input_ids": sdk.FromInt64([]int64{1, 1}, []int64{464})}})
		if err != nil {
			t.Fatalf("Infer: %v", err)
		}
		v, err := r.Outputs["logits"].Float32s()
		if err != nil || len(v) != logitsVocab {
			t.Fatalf("logits: %d values, %v", len(v), err)
		}
		for i, x := range v {
			if want := float32(math.Sin(float64(i))); x != want {
				t.Fatalf("logits[%d] = %v, want %v (first mismatch)", i, x, want)
			}
		}
		return v
	}
	rowBytes := int64(logitsVocab * 4)

	inline := testConfig(t)
	inline.NoSharedMemory = true
	pi := startTest(t, inline)
	load(t, pi, "logits", nil)
	logits(pi)
	if st := pi.SharedMemoryStats(); st.Calls != 0 {
		t.Fatalf("NoSharedMemory: stats %+v, want nothing through shared memory", st)
	}

	p := startTest(t, testConfig(t))
	load(t, p, "logits", nil)
	logits(p)
	if st := p.SharedMemoryStats(); st.Calls != 1 || st.Bytes != rowBytes {
		t.Fatalf("stats %+v, want 1 answer of %d bytes through shared memory", st, rowBytes)
	}
	// A restarted process gets a segment of its own.
	pid := p.Pid()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for p.Restarts() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	logits(p)
	if st := p.SharedMemoryStats(); p.Pid() == pid || st.Calls != 2 || st.Bytes != 2*rowBytes {
		t.Fatalf("after a restart: pid %d → %d, stats %+v; want a new process and 2 answers through shared memory", pid, p.Pid(), st)
	}
}

// The segment's descriptor and size are set by the host for each process it starts; a value the
// host itself inherited (say from a parent that was itself started as a plugin) must not
// override them.
func TestSharedMemoryEnvNotOverriddenByHostEnv(t *testing.T) {
	t.Setenv("MODELRT_SHM_FD", "3")
	t.Setenv("MODELRT_SHM_BYTES", "4096")
	p := startTest(t, testConfig(t))
	load(t, p, "logits", nil)
	r, err := p.Infer(context.Background(), &sdk.InferRequest{Model: "logits",
		Inputs: map[string]*sdk.Tensor{"input_ids": sdk.FromInt64([]int64{1, 1}, []int64{464})}})
	if err != nil {
		t.Fatalf("Infer: %v", err)
	}
	if v, err := r.Outputs["logits"].Float32s(); err != nil || len(v) != logitsVocab {
		t.Fatalf("logits: %d values, %v", len(v), err)
	}
	if st := p.SharedMemoryStats(); st.Calls != 1 {
		t.Fatalf("stats %+v: the host's own MODELRT_SHM_* environment replaced the segment's, so the answer came inline", st)
	}
}

// Close can land while a restart is replaying state on the new process, after relaunch last
// looked at p.done and before it installs the process. The plugin must stay closed and the new
// process must not outlive it.
func TestCloseDuringRelaunchInstall(t *testing.T) {
	p := startTest(t, testConfig(t))
	client, backend, shm, err := p.launch(context.Background()) // relaunch, up to its p.done check
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	p.install(client, backend, shm)
	if st := p.State(); st != StateClosed {
		t.Errorf("state after Close = %v, want closed", st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !client.Exited() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !client.Exited() {
		client.Kill()
		t.Fatal("the process launched during Close is still running after Close returned")
	}
}

// A plugin given up on releases its last process's segment at once, not only at Close: a
// failed backend may stay registered (and reported) for the host's whole life.
func TestFailedPluginReleasesSharedMemory(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxRestarts = 1
	p := startTest(t, cfg)
	p.mu.Lock()
	shm := p.shm
	p.mu.Unlock()
	if shm == nil {
		t.Fatal("the plugin runs without a shared-memory segment")
	}
	if _, err := shm.File().Stat(); err != nil {
		t.Fatalf("segment of the running plugin: %v", err)
	}
	flag := filepath.Join(t.TempDir(), "crash")
	load(t, p, "echo", map[string]string{"crash_if_exists": flag})
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := echo(context.Background(), p, map[string]string{"action": "crash"}); !errors.Is(err, ErrCrashed) {
		t.Fatalf("err = %v, want ErrCrashed", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for p.State() != StateFailed && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if st := p.State(); st != StateFailed {
		t.Fatalf("state %v, want failed", st)
	}
	if _, err := shm.File().Stat(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("segment after the plugin failed: Stat err = %v, want it closed", err)
	}
}

// syncBuffer is a log sink safe for the host's log-relaying goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A process started without a segment must not be told of one by MODELRT_SHM_* variables the
// host itself inherited: it would map (and then close) whatever its descriptor 3 happens to be.
func TestNoSharedMemoryClearsInheritedEnv(t *testing.T) {
	t.Setenv("MODELRT_SHM_FD", "3")
	t.Setenv("MODELRT_SHM_BYTES", "4096")
	var logs syncBuffer
	cfg := testConfig(t)
	cfg.NoSharedMemory = true
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p := startTest(t, cfg)
	load(t, p, "logits", nil) // a call: the plugin has served, so its start-up log is in
	if strings.Contains(logs.String(), "shared memory") {
		t.Fatalf("the plugin looked for a segment it was not given:\n%s", logs.String())
	}
}
