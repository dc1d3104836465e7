// Package ort is the ONNX Runtime engine of the onnxrt backend: it loads the ONNX Runtime shared
// library once per process, runs exported GPT-2-class decoder graphs with a KV cache kept inside
// each session (LM, LMSession), and runs arbitrary ONNX graphs on named tensors (Graph).
//
// It is a thin layer over github.com/yalue/onnxruntime_go (cgo). The design choices — which graph
// conventions are recognised, how the cache moves between steps without copying, what is safe
// for concurrent use — are written down in docs/onnxruntime.md.
package ort

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"

	ortgo "github.com/yalue/onnxruntime_go"

	"github.com/modelrt/modelrt/onnx/ortlib"
)

var (
	// ErrInvalidInput reports a request the model cannot serve: bad token ids, a malformed
	// attention mask, a batch size other than the session's, or a length beyond the context.
	ErrInvalidInput = errors.New("ort: invalid input")
	// ErrUnsupportedGraph reports a graph whose inputs or outputs fit no known convention.
	ErrUnsupportedGraph = errors.New("ort: unsupported graph")
	// ErrLibrary reports that the ONNX Runtime library is missing or cannot be loaded.
	ErrLibrary = errors.New("ort: ONNX Runtime library unavailable")
	// ErrProviderUnavailable reports an execution provider that the loaded library lacks.
	ErrProviderUnavailable = errors.New("ort: execution provider unavailable")
	// ErrClosed reports use of a model, graph or session after Close.
	ErrClosed = errors.New("ort: closed")
)

// EnvOptions configures the process-wide ONNX Runtime environment.
type EnvOptions struct {
	// LibraryPath is the ONNX Runtime shared library to load. Empty: ortlib.Find, which honours
	// $ONNXRUNTIME_SHARED_LIBRARY_PATH and then the documented install location.
	LibraryPath string
	// LogLevel is ONNX Runtime's own log level: "verbose", "info", "warning" (default), "error"
	// or "fatal".
	LogLevel string
}

var env struct {
	mu   sync.Mutex
	path string // the library loaded; empty until Init succeeds
}

// Init loads the ONNX Runtime library and creates the process-wide environment. It may be called
// many times; only the first successful call loads anything (onnxruntime_go allows one
// environment per process). A later call naming a different library is an error.
func Init(opts EnvOptions) error {
	env.mu.Lock()
	defer env.mu.Unlock()
	if env.path != "" {
		if opts.LibraryPath != "" && opts.LibraryPath != env.path {
			return fmt.Errorf("%w: already initialized with %s, cannot switch to %s in the same process", ErrLibrary, env.path, opts.LibraryPath)
		}
		return nil
	}
	path := opts.LibraryPath
	if path == "" {
		p, err := ortlib.Find()
		if err != nil {
			return fmt.Errorf("%w: %w", ErrLibrary, err)
		}
		path = p
	} else if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%w: %v (install the pinned library with %s)", ErrLibrary, err, ortlib.InstallCommand)
	}
	var envOpts []ortgo.EnvironmentOption
	switch strings.ToLower(opts.LogLevel) {
	case "", "warning":
		envOpts = append(envOpts, ortgo.WithLogLevelWarning())
	case "verbose":
		envOpts = append(envOpts, ortgo.WithLogLevelVerbose())
	case "info":
		envOpts = append(envOpts, ortgo.WithLogLevelInfo())
	case "error":
		envOpts = append(envOpts, ortgo.WithLogLevelError())
	case "fatal":
		envOpts = append(envOpts, ortgo.WithLogLevelFatal())
	default:
		return fmt.Errorf("%w: log level %q: want verbose, info, warning, error or fatal", ErrInvalidInput, opts.LogLevel)
	}
	// Without an explicit path onnxruntime_go would dlopen a bare "onnxruntime.so".
	ortgo.SetSharedLibraryPath(path)
	if err := ortgo.InitializeEnvironment(envOpts...); err != nil {
		return fmt.Errorf("%w: load %s: %v (the pinned library is ONNX Runtime 1.30.0; install it with %s, or point %s at a compatible %s)",
			ErrLibrary, path, err, ortlib.InstallCommand, ortlib.EnvVar, ortlib.LibName)
	}
	env.path = path
	slog.Info("onnx runtime loaded", "library", path, "version", ortgo.GetVersion())
	return nil
}

// LibraryPath returns the library Init loaded, or "" before a successful Init.
func LibraryPath() string {
	env.mu.Lock()
	defer env.mu.Unlock()
	return env.path
}

// Version returns the loaded ONNX Runtime's version string, or "" before a successful Init.
func Version() string {
	if LibraryPath() == "" {
		return ""
	}
	return ortgo.GetVersion()
}

// SessionOptions are the ONNX Runtime session settings a backend config may choose.
type SessionOptions struct {
	// IntraOpThreads and InterOpThreads size ONNX Runtime's thread pools; 0 keeps its default
	// (one intra-op thread per physical core).
	IntraOpThreads, InterOpThreads int
	// GraphOptimizationLevel is "disable", "basic", "extended" or "all" (default "all").
	GraphOptimizationLevel string
	// MemoryArena enables or disables the CPU memory arena; nil keeps ONNX Runtime's default (on).
	MemoryArena *bool
	// AllowSpinning sets whether idle ONNX Runtime pool threads spin-wait for work
	// (session.intra_op/inter_op.allow_spinning); nil keeps ONNX Runtime's default (spin).
	// Spinning saves a little latency on idle cores and costs a lot when the cores are shared
	// with other processes: docs/benchmarks.md measured decode 1.3–7× faster with it off there.
	AllowSpinning *bool
	// ExecutionProviders are tried in order with CPU as the implicit fallback: "cpu" (default),
	// "cuda", "tensorrt", "openvino", "coreml", "directml", or any name ONNX Runtime's generic
	// SessionOptionsAppendExecutionProvider accepts ("XNNPACK", "QNN", ...). A provider the loaded
	// library lacks is an ErrProviderUnavailable error, never a silent CPU fallback.
	ExecutionProviders []string
}

// build turns o into onnxruntime_go options; the caller destroys them after creating sessions.
func (o SessionOptions) build() (*ortgo.SessionOptions, error) {
	if o.IntraOpThreads < 0 || o.InterOpThreads < 0 {
		return nil, fmt.Errorf("%w: thread counts must be >= 0 (intra %d, inter %d)", ErrInvalidInput, o.IntraOpThreads, o.InterOpThreads)
	}
	var level ortgo.GraphOptimizationLevel
	switch strings.ToLower(o.GraphOptimizationLevel) {
	case "", "all":
		level = ortgo.GraphOptimizationLevelEnableAll
	case "disable", "none":
		level = ortgo.GraphOptimizationLevelDisableAll
	case "basic":
		level = ortgo.GraphOptimizationLevelEnableBasic
	case "extended":
		level = ortgo.GraphOptimizationLevelEnableExtended
	default:
		return nil, fmt.Errorf("%w: graph optimization level %q: want disable, basic, extended or all", ErrInvalidInput, o.GraphOptimizationLevel)
	}
	so, err := ortgo.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("ort: session options: %w", err)
	}
	fail := func(err error) (*ortgo.SessionOptions, error) {
		so.Destroy()
		return nil, err
	}
	if err := so.SetGraphOptimizationLevel(level); err != nil {
		return fail(fmt.Errorf("ort: graph optimization level: %w", err))
	}
	if o.IntraOpThreads > 0 {
		if err := so.SetIntraOpNumThreads(o.IntraOpThreads); err != nil {
			return fail(fmt.Errorf("ort: intra-op threads: %w", err))
		}
	}
	if o.InterOpThreads > 0 {
		if err := so.SetInterOpNumThreads(o.InterOpThreads); err != nil {
			return fail(fmt.Errorf("ort: inter-op threads: %w", err))
		}
	}
	if o.MemoryArena != nil {
		if err := so.SetCpuMemArena(*o.MemoryArena); err != nil {
			return fail(fmt.Errorf("ort: memory arena: %w", err))
		}
	}
	if o.AllowSpinning != nil {
		v := "0"
		if *o.AllowSpinning {
			v = "1"
		}
		for _, key := range []string{"session.intra_op.allow_spinning", "session.inter_op.allow_spinning"} {
			if err := so.AddSessionConfigEntry(key, v); err != nil {
				return fail(fmt.Errorf("ort: %s: %w", key, err))
			}
		}
	}
	for _, ep := range o.ExecutionProviders {
		if err := appendProvider(so, ep); err != nil {
			return fail(fmt.Errorf("%w: %q: %v (this library is ONNX Runtime %s, a CPU-only build unless you installed another; use \"cpu\")",
				ErrProviderUnavailable, ep, err, ortgo.GetVersion()))
		}
	}
	return so, nil
}

func appendProvider(so *ortgo.SessionOptions, name string) error {
	switch strings.ToLower(name) {
	case "cpu", "":
		return nil // always present; ONNX Runtime falls back to it for every node
	case "cuda":
		co, err := ortgo.NewCUDAProviderOptions()
		if err != nil {
			return err
		}
		defer co.Destroy()
		return so.AppendExecutionProviderCUDA(co)
	case "tensorrt":
		to, err := ortgo.NewTensorRTProviderOptions()
		if err != nil {
			return err
		}
		defer to.Destroy()
		return so.AppendExecutionProviderTensorRT(to)
	case "openvino":
		return so.AppendExecutionProviderOpenVINO(nil)
	case "coreml":
		return so.AppendExecutionProviderCoreMLV2(nil)
	case "directml":
		return so.AppendExecutionProviderDirectML(0)
	default:
		return so.AppendExecutionProvider(name, nil)
	}
}

// openSession creates a session for path that takes inputs and returns outputs by name.
func openSession(path string, inputs, outputs []string, so SessionOptions) (*ortgo.DynamicAdvancedSession, error) {
	opts, err := so.build()
	if err != nil {
		return nil, err
	}
	defer opts.Destroy()
	sess, err := ortgo.NewDynamicAdvancedSession(path, inputs, outputs, opts)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return sess, nil
}

// runCtx runs sess with run options ro, which it terminates when ctx is cancelled mid-run (and
// re-arms afterwards, so that ro can serve the next run). Errors name path.
func runCtx(ctx context.Context, sess *ortgo.DynamicAdvancedSession, ro *ortgo.RunOptions, path string, in, out []ortgo.Value) error {
	done := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		ro.Terminate()
		close(done)
	})
	err := sess.RunWithOptions(in, out, ro)
	if !stop() {
		<-done
		ro.UnsetTerminate()
		if ctx.Err() != nil {
			return fmt.Errorf("run %s: %w (%v)", path, ctx.Err(), err)
		}
	}
	if err != nil {
		return fmt.Errorf("run %s: %w", path, err)
	}
	return nil
}
