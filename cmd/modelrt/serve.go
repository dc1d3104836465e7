package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelrt/modelrt/runtime/engine"
	"github.com/modelrt/modelrt/runtime/plugin"
	"github.com/modelrt/modelrt/runtime/server"
)

type serveFlags struct {
	configFlags
	config          string
	listen          string
	grpcListen      string
	ui              bool
	authTokenFile   string
	maxConcurrency  int
	maxQueue        int
	maxBatch        int
	maxBodyBytes    int64
	requestTimeout  time.Duration
	shutdownTimeout time.Duration
	logFormat       string
	limits          server.Options // the connection and input limits (serve_limits.go)
}

func newServeCmd(g *globals) *cobra.Command {
	f := &serveFlags{}
	cmd := &cobra.Command{
		Use:   "serve --config FILE.hcl|DIR [--listen 127.0.0.1:8080]",
		Short: "Serve the models and pipelines of a configuration over HTTP (OpenAI, KServe v2, pipelines)",
		Long: `Loads the configuration (as validate does), starts its backend plugins, loads every model
and serves, on --listen (loopback unless told otherwise):

  POST /v1/completions, GET /v1/models       OpenAI-compatible, for causal-lm models
  POST /v1/pipelines/NAME:run, GET /v1/pipelines
                                             pipelines; SSE with Accept: text/event-stream
  /v2/health/{live,ready}, GET /v2/models/M[/ready], POST /v2/models/M/infer
                                             KServe Open Inference Protocol v2
  POST /v2/repository/index, POST /v2/repository/models/M/{load,unload}
                                             KServe/Triton model repository: load, unload one model
  GET /metrics, GET /healthz                 Prometheus metrics, health

The bound address is printed on stdout ("listening on http://ADDR"; --listen 127.0.0.1:0 picks a
free port). SIGTERM or SIGINT drains: new connections are refused, requests in flight finish
within --shutdown-timeout (then they are cancelled), the plugins stop. SIGHUP reloads the
configuration: a new engine is built beside the old one, which finishes its requests and
closes; a configuration with errors is rejected (its diagnostics are logged) and the old one
keeps serving. A model block's keep_alive unloads the model after that long idle; the next
request loads it again. Access logs are slog records on stderr (--log-format json for JSON lines).
docs/server.md has the API.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if f.config != "" && f.config != args[0] {
					return fmt.Errorf("give the configuration once: --config %s or %s", f.config, args[0])
				}
				f.config = args[0]
			}
			if f.config == "" {
				return errors.New("--config FILE.hcl|DIR is required")
			}
			return serve(cmd, g, f)
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "configuration: a .hcl file or a directory of them")
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8080", "address to listen on (host:port)")
	fl.StringVar(&f.grpcListen, "grpc-listen", "", "address of KServe v2 gRPC (host:port; none: off)")
	fl.BoolVar(&f.ui, "ui", false, "serve the playground page at GET / (behind the same auth)")
	fl.StringVar(&f.authTokenFile, "auth-token-file", "", "file holding a bearer token every request but the health checks must carry")
	fl.IntVar(&f.maxConcurrency, "max-concurrency", 0, fmt.Sprintf("requests running at once per model (0: a causal-lm model's max_batch, %d for other models)", server.DefaultMaxConcurrency))
	fl.IntVar(&f.maxQueue, "max-queue", server.DefaultMaxQueue, "requests waiting per model before 429")
	fl.IntVar(&f.maxBatch, "max-batch", server.DefaultMaxBatch, "rows per completions or chat request: prompts × n")
	fl.Int64Var(&f.maxBodyBytes, "max-body-bytes", server.DefaultMaxBodyBytes, "request body limit (413 beyond)")
	fl.DurationVar(&f.requestTimeout, "request-timeout", server.DefaultRequestTimeout, "time limit of one request")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long SIGTERM waits for requests in flight")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format on stderr: text or json")
	registerLimits(fl, &f.limits)
	return cmd
}

func serve(cmd *cobra.Command, g *globals, f *serveFlags) error {
	ctx := cmd.Context() // cancelled by SIGTERM and SIGINT (main)
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	log, err := serveLogger(cmd, g, f)
	if err != nil {
		return err
	}
	token := ""
	if f.authTokenFile != "" {
		b, err := os.ReadFile(f.authTokenFile)
		if err != nil {
			return fmt.Errorf("--auth-token-file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return fmt.Errorf("--auth-token-file %s: the file is empty", f.authTokenFile)
		}
	}
	e, diags, err := buildEngine(ctx, g, f, log)
	if diags != "" {
		fmt.Fprint(stderr, diags)
	}
	if err != nil {
		return err
	}
	if f.maxQueue == 0 {
		f.maxQueue = -1 // no queue: server.Options reads 0 as its default
	}
	opts := f.limits
	if !cmd.Flags().Changed("allowed-hosts") {
		opts.AllowedHosts = listenHosts(f.listen)
	}
	opts.Logger, opts.AuthToken, opts.MaxBodyBytes, opts.MaxConcurrency = log, token, f.maxBodyBytes, f.maxConcurrency
	opts.MaxQueue, opts.MaxBatch, opts.RequestTimeout, opts.Version = f.maxQueue, f.maxBatch, f.requestTimeout, version
	opts.UI = f.ui
	srv := server.New(e, opts)
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		srv.Close()
		return fmt.Errorf("--listen %s: %w", f.listen, err)
	}
	if host, _, _ := net.SplitHostPort(f.listen); token == "" && !isLoopback(host) {
		log.Warn("listening beyond loopback without --auth-token-file: anyone who can reach the port can use the models", "listen", ln.Addr().String())
	}
	// Requests get a context of their own, cancelled only when the drain deadline passes: the
	// command's context ends at SIGTERM, when requests should still finish.
	base, cancelRequests := context.WithCancel(context.Background())
	defer cancelRequests()
	hs := srv.HTTPServer(base, slog.NewLogLogger(log.Handler(), slog.LevelWarn))
	// SIGHUP is caught before the address is announced: whoever reads "listening on" may
	// reload at once, and an uncaught SIGHUP would end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	announceGRPC, stopGRPC, err := serveGRPC(f, srv, log, token)
	if err != nil {
		ln.Close()
		srv.Close()
		return err
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(srv.Listener(ln)) }()
	fmt.Fprintf(stdout, "listening on http://%s\n", ln.Addr())
	announceGRPC(stdout)
	log.Info("serving", "addr", ln.Addr().String(), "models", len(e.Models()), "pipelines", len(e.Pipelines()))

	for running := true; running; {
		select {
		case <-hup:
			reload(ctx, g, f, log, srv)
		case err := <-served:
			cancelRequests()
			stopGRPC(ctx)
			srv.Close()
			return fmt.Errorf("serve: %w", err)
		case <-ctx.Done():
			running = false
		}
	}

	log.Info("draining", "deadline", f.shutdownTimeout)
	srv.Drain()
	sctx, cancel := context.WithTimeout(context.Background(), f.shutdownTimeout)
	defer cancel()
	stopGRPC(sctx)
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("drain deadline passed: cancelling the requests still running", "err", err)
		cancelRequests()
		hs.Close()
	}
	cancelRequests()
	if err := srv.Close(); err != nil {
		log.Warn("stopping the backends", "err", err)
	}
	log.Info("stopped")
	return nil
}

// buildEngine loads the configuration and starts an engine for all of it. Diagnostics come
// back rendered (with source snippets) for the terminal or the log.
func buildEngine(ctx context.Context, g *globals, f *serveFlags, log *slog.Logger) (*engine.Engine, string, error) {
	cfg, diags, err := loadConfig(ctx, g, &f.configFlags, f.config)
	if err != nil {
		return nil, "", err
	}
	var buf bytes.Buffer
	writeDiagnostics(&buf, diags, cfg.Files)
	if diags.HasErrors() {
		return nil, buf.String(), fmt.Errorf("configuration %s has errors", f.config)
	}
	e, err := engine.New(ctx, cfg, engine.Options{
		PluginDirs: plugin.SearchDirs(g.pluginDir), LogLevel: g.logLevel, Logger: log, OrdinaryText: !f.limits.SpecialTokens,
		Progress: func(p engine.Progress) {
			if p.Done && p.Phase != "ready" {
				log.Info(p.Phase+" done", "name", p.Name, "index", p.Index, "total", p.Total, "elapsed", p.Elapsed.Round(time.Millisecond))
			}
		},
	})
	return e, buf.String(), err
}

// reload builds a new engine from the configuration as it is now and swaps it in; on any
// error the old engine keeps serving.
func reload(ctx context.Context, g *globals, f *serveFlags, log *slog.Logger, srv *server.Server) {
	log.Info("SIGHUP: reloading the configuration", "config", f.config)
	t0 := time.Now()
	e, diags, err := buildEngine(ctx, g, f, log)
	if err != nil {
		log.Error("reload rejected; the previous configuration keeps serving", "err", err, "diagnostics", diags)
		return
	}
	if diags != "" {
		log.Warn("configuration warnings", "diagnostics", diags)
	}
	srv.Swap(e)
	log.Info("reloaded", "elapsed", time.Since(t0).Round(time.Millisecond))
}

// serveLogger logs at info unless --log-level says otherwise (the CLI's default of warn would
// hide the access log).
func serveLogger(cmd *cobra.Command, g *globals, f *serveFlags) (*slog.Logger, error) {
	level := slog.LevelInfo
	if cmd.Flags().Changed("log-level") {
		if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
			return nil, fmt.Errorf("--log-level %q: %w", g.logLevel, err)
		}
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch f.logFormat {
	case "text":
		h = slog.NewTextHandler(cmd.ErrOrStderr(), opts)
	case "json":
		h = slog.NewJSONHandler(cmd.ErrOrStderr(), opts)
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", f.logFormat)
	}
	return slog.New(h), nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
