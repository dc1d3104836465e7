// Package plugin is the host side of modelrt's backends: it finds plugin binaries, launches them
// with hashicorp/go-plugin (gRPC, AutoMTLS), checks their handshake and protocol version, bounds
// every call with a deadline, restarts a crashed plugin with backoff (reloading the models it
// had) for as long as the host runs, and kills every child when the host stops.
//
// A *Plugin implements sdk.Backend, sdk.Sessions, sdk.Configurer and sdk.StatsReporter, so the
// rest of the host talks to a plugin exactly as a backend author's code would be called.
package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"time"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/modelrt/modelrt/sdk"
)

// Sentinel errors, to be checked with errors.Is.
var (
	// ErrCrashed: the plugin process died during the call. The host restarts it; the next call
	// goes to the new process.
	ErrCrashed = errors.New("plugin: backend crashed")
	// ErrFailed: the plugin kept crashing (or could not be restarted): calls fail at once while
	// the host keeps trying to restart it, backing off up to MaxRestartBackoff between tries.
	ErrFailed = errors.New("plugin: backend failed")
	// ErrStart: the plugin could not be started (missing, not executable, not a modelrt plugin,
	// wrong protocol version, no handshake within the start timeout).
	ErrStart = errors.New("plugin: cannot start backend")
	// ErrClosed: the plugin was closed by the host.
	ErrClosed = errors.New("plugin: backend closed")
)

// Defaults for Config's zero values.
const (
	DefaultStartTimeout   = 15 * time.Second
	DefaultCallTimeout    = 5 * time.Minute
	DefaultMaxRestarts    = 5
	DefaultRestartBackoff = 200 * time.Millisecond
	// MaxRestartBackoff caps the delay between restart attempts of a plugin that keeps
	// crashing: the host never gives up on it, but tries at most every 30 s.
	MaxRestartBackoff = 30 * time.Second
	// StableAfter is how long a (re)started plugin must live before its crash count resets.
	StableAfter = 30 * time.Second
	// monitorInterval is how often the host checks that the plugin process is still alive.
	monitorInterval = 100 * time.Millisecond
)

// Config describes one plugin to run.
type Config struct {
	// Name identifies the backend in logs and errors (the HCL label, or the binary's name).
	Name string
	// Path is the plugin executable.
	Path string
	Args []string
	// Env is added to the host's environment for the plugin.
	Env []string
	// StartTimeout bounds launch + handshake (DefaultStartTimeout when zero).
	StartTimeout time.Duration
	// CallTimeout is the deadline of each call whose context has none shorter
	// (DefaultCallTimeout when zero).
	CallTimeout time.Duration
	// MaxRestarts is how many crashes in a row (each within StableAfter of its start) the host
	// waits out (calls wait for the restart) before it marks the plugin failed: calls then fail
	// at once while restarts go on with backoff (DefaultMaxRestarts when zero).
	MaxRestarts int
	// RestartBackoff is the first delay before a restart; it doubles with every crash in a row
	// up to MaxRestartBackoff.
	RestartBackoff time.Duration
	// Logger receives the host's and the plugin's log records (slog.Default() when nil).
	Logger *slog.Logger
	// LogLevel is passed to the plugin as MODELRT_LOG_LEVEL.
	LogLevel string
	// NoSharedMemory sends every output over gRPC instead of through a shared-memory segment
	// (sdk.SharedMemory); for measurements and for systems without memfd.
	NoSharedMemory bool
}

func (c *Config) fill() {
	if c.Name == "" {
		c.Name = c.Path
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.MaxRestarts <= 0 {
		c.MaxRestarts = DefaultMaxRestarts
	}
	if c.RestartBackoff <= 0 {
		c.RestartBackoff = DefaultRestartBackoff
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// State is the life-cycle state of a plugin.
type State int

// States of a plugin.
const (
	StateRunning State = iota
	// StateRestarting: the process died; a restart is under way and calls wait for it.
	StateRestarting
	// StateFailed: it crashed more than MaxRestarts times in a row. Calls fail at once with
	// ErrFailed, and the host keeps restarting it with backoff; a successful restart makes it
	// running again.
	StateFailed
	StateClosed
)

func (s State) String() string {
	return [...]string{"running", "restarting", "failed", "closed"}[s]
}

// Plugin is a running backend plugin process, restarted when it crashes.
type Plugin struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	cond      *sync.Cond // signalled when state or generation changes
	state     State
	gen       int // incremented on every (re)start
	client    *goplugin.Client
	backend   *sdk.Client
	shm       *sdk.SharedMemory // the current process's segment, nil without one
	shmTotal  sdk.ShmStats      // what earlier processes' segments carried
	pid       int
	started   time.Time
	crashes   int       // consecutive unstable crashes
	lastErr   error     // why the last start failed or the plugin failed
	nextTry   time.Time // when the next restart attempt starts (zero when none is waiting)
	restarts  int       // total restarts
	desc      *sdk.DescribeResponse
	config    json.RawMessage                  // replayed after a restart
	models    map[string]*sdk.LoadModelRequest // replayed after a restart
	modelSeq  []string                         // load order, for replay
	closeOnce sync.Once
	done      chan struct{}
}

// Start launches the plugin, performs the handshake and asks it to describe itself. The error
// wraps ErrStart and names the path and what was expected.
func Start(ctx context.Context, cfg Config) (*Plugin, error) {
	cfg.fill()
	p := &Plugin{cfg: cfg, log: cfg.Logger.With("backend", cfg.Name), models: map[string]*sdk.LoadModelRequest{}, done: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	if err := checkExecutable(cfg.Path); err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrStart, cfg.Path, err)
	}
	client, backend, shm, err := p.launch(ctx)
	if err != nil {
		return nil, err
	}
	p.install(client, backend, shm)
	desc, err := p.Describe(ctx, &sdk.DescribeRequest{})
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("%w %q: describe: %v", ErrStart, cfg.Path, err)
	}
	p.desc = desc
	go p.monitor()
	return p, nil
}

func checkExecutable(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("plugin binary not found: %v", err)
	}
	if st.IsDir() {
		return fmt.Errorf("is a directory, want a plugin executable")
	}
	if st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("is not executable (mode %v)", st.Mode().Perm())
	}
	return nil
}

// launch starts one plugin process and dispenses its backend client. Each process gets its own
// shared-memory segment (nil when disabled or unavailable: then outputs travel over gRPC).
func (p *Plugin) launch(ctx context.Context) (*goplugin.Client, *sdk.Client, *sdk.SharedMemory, error) {
	cmd := exec.Command(p.cfg.Path, p.cfg.Args...)
	cmd.Env = append(os.Environ(), p.cfg.Env...)
	if p.cfg.LogLevel != "" {
		cmd.Env = append(cmd.Env, "MODELRT_LOG_LEVEL="+p.cfg.LogLevel)
	}
	var shm *sdk.SharedMemory
	if !p.cfg.NoSharedMemory {
		var err error
		if shm, err = sdk.NewSharedMemory(sdk.DefaultShmSlots, sdk.DefaultShmSlotBytes); err != nil {
			p.log.Warn("no shared memory for this plugin; outputs travel over gRPC", "error", err)
		} else {
			cmd.ExtraFiles = []*os.File{shm.File()}
		}
	}
	cmd.Env = append(cmd.Env, shm.Env(3)...) // nil shm: clears MODELRT_SHM_* the host inherited
	orphanGuard(cmd)
	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sdk.HostPlugins(),
		Cmd:              cmd,
		// cmd.Env already holds the host's environment, before what we set for this process.
		// go-plugin would append it again after, and the last value of a key wins: an inherited
		// MODELRT_SHM_FD/BYTES (or any key of Config.Env) would override ours.
		SkipHostEnv:      true,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		AutoMTLS:         true,
		GRPCDialOptions:  sdk.DialOptions(),
		StartTimeout:     p.cfg.StartTimeout,
		Logger:           hclogToSlog(p.log, "plugin"),
	})
	type result struct {
		b   *sdk.Client
		err error
	}
	ch := make(chan result, 1)
	go func() {
		rpc, err := client.Client()
		if err != nil {
			ch <- result{err: err}
			return
		}
		raw, err := rpc.Dispense(sdk.PluginName)
		if err != nil {
			ch <- result{err: err}
			return
		}
		b, ok := raw.(*sdk.Client)
		if !ok {
			ch <- result{err: fmt.Errorf("dispensed %T, want *sdk.Client", raw)}
			return
		}
		ch <- result{b: b}
	}()
	fail := func(err error) (*goplugin.Client, *sdk.Client, *sdk.SharedMemory, error) {
		stopProcess(client, shm)
		return nil, nil, nil, err
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return fail(fmt.Errorf("%w %q: %v (want a modelrt backend plugin speaking protocol v%d; see docs/sdk.md)", ErrStart, p.cfg.Path, r.err, sdk.ProtocolVersion))
		}
		if shm != nil {
			r.b.UseSharedMemory(shm)
		}
		return client, r.b, shm, nil
	case <-ctx.Done():
		return fail(fmt.Errorf("%w %q: %v", ErrStart, p.cfg.Path, ctx.Err()))
	}
}

// stopProcess kills a plugin process and releases its shared-memory segment (unmapped once the
// last call using it returns). Either may be nil.
func stopProcess(client *goplugin.Client, shm *sdk.SharedMemory) {
	if client != nil {
		client.Kill()
	}
	if shm != nil {
		shm.Close()
	}
}

func (p *Plugin) install(client *goplugin.Client, backend *sdk.Client, shm *sdk.SharedMemory) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == StateClosed {
		// Close ran while relaunch replayed state on this process: nobody else would kill it
		// or release its segment, and the plugin must stay closed.
		stopProcess(client, shm)
		return
	}
	if old := p.shm; old != nil {
		// The old process is gone; the segment is unmapped once its last call returns.
		st := old.Stats()
		p.shmTotal.Calls += st.Calls
		p.shmTotal.Bytes += st.Bytes
		old.Close()
	}
	p.client, p.backend, p.shm = client, backend, shm
	if rc := client.ReattachConfig(); rc != nil {
		p.pid = rc.Pid
	}
	p.gen++
	p.started = time.Now()
	p.state = StateRunning
	p.lastErr = nil
	p.cond.Broadcast()
}

// Name returns the configured name of the backend.
func (p *Plugin) Name() string { return p.cfg.Name }

// Path returns the plugin executable.
func (p *Plugin) Path() string { return p.cfg.Path }

// Description returns what the plugin said of itself at start.
func (p *Plugin) Description() *sdk.DescribeResponse { return p.desc }

// Pid returns the process id of the current plugin process.
func (p *Plugin) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

// State returns the life-cycle state.
func (p *Plugin) State() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// SharedMemoryStats reports how many answers, and how many bytes, came through shared memory
// rather than over gRPC, over all the plugin's processes.
func (p *Plugin) SharedMemoryStats() sdk.ShmStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.shmTotal
	if p.shm != nil {
		cur := p.shm.Stats()
		st.Calls += cur.Calls
		st.Bytes += cur.Bytes
	}
	return st
}

// Restarts returns how many times the plugin was restarted.
func (p *Plugin) Restarts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.restarts
}

// Close kills the plugin process. It is safe to call more than once.
func (p *Plugin) Close() error {
	p.closeOnce.Do(func() {
		close(p.done)
		p.mu.Lock()
		p.state = StateClosed
		client, shm := p.client, p.shm
		p.cond.Broadcast()
		p.mu.Unlock()
		stopProcess(client, shm)
	})
	return nil
}

// current waits while the plugin restarts and returns the live client and its generation.
func (p *Plugin) current(ctx context.Context) (*sdk.Client, int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == StateRestarting {
		stop := context.AfterFunc(ctx, func() {
			p.mu.Lock()
			p.cond.Broadcast()
			p.mu.Unlock()
		})
		defer stop()
		for p.state == StateRestarting && ctx.Err() == nil {
			p.cond.Wait()
		}
	}
	switch p.state {
	case StateFailed:
		return nil, 0, fmt.Errorf("%w: %s (%s) crashed %d times in a row (%v); retrying%s", ErrFailed, p.cfg.Name, p.cfg.Path, p.crashes, p.lastErr, p.retryIn())
	case StateClosed:
		return nil, 0, fmt.Errorf("%w: %s", ErrClosed, p.cfg.Name)
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	return p.backend, p.gen, nil
}

// exited reports whether the process of generation gen is gone, waiting up to wait for it to be
// reaped (a killed process breaks the connection a moment before its exit is observed).
func (p *Plugin) exited(gen int, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for {
		p.mu.Lock()
		client, g := p.client, p.gen
		p.mu.Unlock()
		if g != gen {
			return true
		}
		if client.Exited() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// call runs fn against the live plugin with the per-call deadline and turns a broken connection
// into ErrCrashed (and a restart).
func call[T any](p *Plugin, ctx context.Context, method string, fn func(context.Context, *sdk.Client) (T, error)) (T, error) {
	var zero T
	c, gen, err := p.current(ctx)
	if err != nil {
		return zero, err
	}
	cctx, cancel := context.WithTimeout(ctx, p.cfg.CallTimeout)
	defer cancel()
	// Whether an expiry is the call timeout's rather than the caller's deadline. The backend
	// sees the same deadline and may answer DeadlineExceeded a moment before cctx's own timer
	// fires, so this is decided from the deadlines, not from cctx.Err().
	ours, _ := cctx.Deadline()
	callerDeadline, callerHas := ctx.Deadline()
	timeoutIsOurs := !callerHas || callerDeadline.After(ours)
	v, err := fn(cctx, c)
	if err == nil {
		return v, nil
	}
	code := sdk.CodeOf(err)
	if code == sdk.CodeUnavailable || code == sdk.CodeUnknown || code == sdk.CodeCanceled && ctx.Err() == nil {
		if p.exited(gen, time.Second) {
			p.crashed(gen)
			return zero, fmt.Errorf("%w: %s (%s) died during %s; it is being restarted: %v", ErrCrashed, p.cfg.Name, p.cfg.Path, method, err)
		}
	}
	if code == sdk.CodeDeadlineExceeded && ctx.Err() == nil && timeoutIsOurs {
		return zero, fmt.Errorf("%s %s: no answer within the call timeout of %v: %w", p.cfg.Name, method, p.cfg.CallTimeout, err)
	}
	return zero, err
}

// monitor notices a plugin process that died between calls.
func (p *Plugin) monitor() {
	t := time.NewTicker(monitorInterval)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
		}
		p.mu.Lock()
		client, gen, state := p.client, p.gen, p.state
		p.mu.Unlock()
		if state == StateRunning && client.Exited() {
			p.crashed(gen)
		}
	}
}

// crashed starts a restart of generation gen unless one is already under way.
func (p *Plugin) crashed(gen int) {
	p.mu.Lock()
	if p.gen != gen || p.state != StateRunning {
		p.mu.Unlock()
		return
	}
	if time.Since(p.started) >= StableAfter {
		p.crashes = 0
	}
	p.crashes++
	p.state = StateRestarting
	shm := p.shm
	p.cond.Broadcast()
	p.mu.Unlock()
	// The process is gone: calls that wait for it to finish a call they abandoned stop waiting
	// (sdk.SharedMemory is unmapped only after its last call returns).
	if shm != nil {
		shm.Close()
	}
	p.log.Warn("backend crashed; restarting", "path", p.cfg.Path, "crashes_in_a_row", p.crashes)
	go p.restart()
}

// retryIn describes when the next restart attempt starts; p.mu is held.
func (p *Plugin) retryIn() string {
	if p.nextTry.IsZero() {
		return " now"
	}
	return " in " + time.Until(p.nextTry).Round(100*time.Millisecond).String()
}

// restart relaunches the plugin with exponential backoff and replays its config and models,
// until it succeeds or the plugin is closed. Beyond MaxRestarts crashes in a row the plugin is
// marked failed (calls fail at once) while the attempts go on, at most MaxRestartBackoff apart.
func (p *Plugin) restart() {
	for {
		p.mu.Lock()
		crashes := p.crashes
		// Exponential backoff: RestartBackoff · 2^(crashes-1), capped.
		backoff := p.cfg.RestartBackoff
		for i := 1; i < crashes && backoff < MaxRestartBackoff; i++ {
			backoff *= 2
		}
		backoff = min(backoff, MaxRestartBackoff)
		// Set before fail, so that whoever sees the failed state also sees when the next
		// attempt starts.
		p.nextTry = time.Now().Add(backoff)
		p.mu.Unlock()
		if crashes > p.cfg.MaxRestarts {
			p.fail(fmt.Errorf("crashed %d times in a row", crashes))
		}
		select {
		case <-p.done:
			return
		case <-time.After(backoff):
		}
		p.mu.Lock()
		p.nextTry = time.Time{}
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), p.cfg.StartTimeout)
		err := p.relaunch(ctx)
		cancel()
		if err == nil {
			p.log.Info("backend restarted", "pid", p.Pid())
			return
		}
		p.log.Warn("backend restart failed", "err", err)
		p.mu.Lock()
		p.lastErr = err
		p.crashes++
		p.mu.Unlock()
	}
}

func (p *Plugin) relaunch(ctx context.Context) error {
	p.mu.Lock()
	old := p.client
	p.mu.Unlock()
	if old != nil {
		old.Kill()
	}
	client, backend, shm, err := p.launch(ctx)
	if err != nil {
		return err
	}
	discard := func() { stopProcess(client, shm) }
	// Replay state on the new process before any caller sees it.
	p.mu.Lock()
	config := p.config
	reqs := make([]*sdk.LoadModelRequest, 0, len(p.modelSeq))
	for _, n := range p.modelSeq {
		reqs = append(reqs, p.models[n])
	}
	p.mu.Unlock()
	if len(config) > 0 {
		if _, err := backend.Configure(ctx, &sdk.ConfigureRequest{Config: config}); err != nil {
			discard()
			return fmt.Errorf("replay config: %w", err)
		}
	}
	for _, r := range reqs {
		if _, err := backend.LoadModel(ctx, r); err != nil {
			discard()
			return fmt.Errorf("reload model %q from %s: %w", r.Name, r.Path, err)
		}
	}
	select {
	case <-p.done:
		discard()
		return nil
	default:
	}
	p.mu.Lock()
	p.restarts++
	p.mu.Unlock()
	p.install(client, backend, shm)
	return nil
}

// fail marks the plugin failed (calls fail at once) while restart keeps trying.
func (p *Plugin) fail(err error) {
	p.mu.Lock()
	if p.state != StateRestarting {
		p.mu.Unlock()
		return // already failed, or closed
	}
	if p.lastErr == nil {
		p.lastErr = err
	}
	p.state = StateFailed
	client, shm := p.client, p.shm
	p.cond.Broadcast()
	p.mu.Unlock()
	// No process will use the segment again; p.shm stays for SharedMemoryStats.
	stopProcess(client, shm)
	p.log.Error("backend failed; calls fail until a restart succeeds", "path", p.cfg.Path, "err", p.lastErr, "max_backoff", MaxRestartBackoff)
}

// Status is what a host reports of a plugin (runtime/server's /healthz).
type Status struct {
	State         State
	Restarts      int       // restarts so far
	CrashesInARow int       // crashes since the process last ran StableAfter
	LastError     string    // why the last start failed, or the plugin failed
	NextRestart   time.Time // when the next restart attempt starts; zero when none waits
}

// Status reports the plugin's state.
func (p *Plugin) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Status{State: p.state, Restarts: p.restarts, CrashesInARow: p.crashes, NextRestart: p.nextTry}
	if p.lastErr != nil && p.state != StateRunning {
		st.LastError = p.lastErr.Error()
	}
	return st
}

// Describe implements sdk.Backend.
func (p *Plugin) Describe(ctx context.Context, req *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return call(p, ctx, "Describe", func(ctx context.Context, c *sdk.Client) (*sdk.DescribeResponse, error) {
		return c.Describe(ctx, req)
	})
}

// Configure implements sdk.Configurer. The config is replayed after every restart.
func (p *Plugin) Configure(ctx context.Context, req *sdk.ConfigureRequest) (*sdk.ConfigureResponse, error) {
	r, err := call(p, ctx, "Configure", func(ctx context.Context, c *sdk.Client) (*sdk.ConfigureResponse, error) {
		return c.Configure(ctx, req)
	})
	if err == nil {
		p.mu.Lock()
		p.config = append(json.RawMessage(nil), req.Config...)
		p.mu.Unlock()
	}
	return r, err
}

// LoadModel implements sdk.Backend. A loaded model is reloaded after every restart.
func (p *Plugin) LoadModel(ctx context.Context, req *sdk.LoadModelRequest) (*sdk.LoadModelResponse, error) {
	r, err := call(p, ctx, "LoadModel", func(ctx context.Context, c *sdk.Client) (*sdk.LoadModelResponse, error) {
		return c.LoadModel(ctx, req)
	})
	if err == nil {
		p.mu.Lock()
		if _, ok := p.models[req.Name]; !ok {
			p.modelSeq = append(p.modelSeq, req.Name)
		}
		cp := *req
		p.models[req.Name] = &cp
		p.mu.Unlock()
	}
	return r, err
}

// UnloadModel implements sdk.Backend.
func (p *Plugin) UnloadModel(ctx context.Context, req *sdk.UnloadModelRequest) (*sdk.UnloadModelResponse, error) {
	r, err := call(p, ctx, "UnloadModel", func(ctx context.Context, c *sdk.Client) (*sdk.UnloadModelResponse, error) {
		return c.UnloadModel(ctx, req)
	})
	if err == nil || sdk.CodeOf(err) == sdk.CodeNotFound {
		p.mu.Lock()
		delete(p.models, req.Name)
		for i, n := range p.modelSeq {
			if n == req.Name {
				p.modelSeq = append(p.modelSeq[:i], p.modelSeq[i+1:]...)
				break
			}
		}
		p.mu.Unlock()
	}
	return r, err
}

// Infer implements sdk.Backend.
func (p *Plugin) Infer(ctx context.Context, req *sdk.InferRequest) (*sdk.InferResponse, error) {
	return call(p, ctx, "Infer", func(ctx context.Context, c *sdk.Client) (*sdk.InferResponse, error) {
		return c.Infer(ctx, req)
	})
}

// OpenSession implements sdk.Sessions. Sessions do not survive a restart: a call with a session
// of the previous process gets NotFound.
func (p *Plugin) OpenSession(ctx context.Context, req *sdk.OpenSessionRequest) (*sdk.OpenSessionResponse, error) {
	return call(p, ctx, "OpenSession", func(ctx context.Context, c *sdk.Client) (*sdk.OpenSessionResponse, error) {
		return c.OpenSession(ctx, req)
	})
}

// CloseSession implements sdk.Sessions.
func (p *Plugin) CloseSession(ctx context.Context, req *sdk.CloseSessionRequest) (*sdk.CloseSessionResponse, error) {
	return call(p, ctx, "CloseSession", func(ctx context.Context, c *sdk.Client) (*sdk.CloseSessionResponse, error) {
		return c.CloseSession(ctx, req)
	})
}

// Health implements sdk.Backend.
func (p *Plugin) Health(ctx context.Context, req *sdk.HealthRequest) (*sdk.HealthResponse, error) {
	return call(p, ctx, "Health", func(ctx context.Context, c *sdk.Client) (*sdk.HealthResponse, error) {
		return c.Health(ctx, req)
	})
}

// Stats implements sdk.StatsReporter.
func (p *Plugin) Stats(ctx context.Context, req *sdk.StatsRequest) (*sdk.StatsResponse, error) {
	return call(p, ctx, "Stats", func(ctx context.Context, c *sdk.Client) (*sdk.StatsResponse, error) {
		return c.Stats(ctx, req)
	})
}
