package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelrt/modelrt/runtime/bench"
)

type benchFlags struct {
	quick          bool
	shape          string // hidden: full, quick or tiny (tests)
	jsonPath, plot string
	backends       string
	cache          string
	int8           bool
	config         []string
	reps           int
	rounds         int
}

func newBenchCmd(g *globals) *cobra.Command {
	f := &benchFlags{}
	cmd := &cobra.Command{
		Use:   "bench [--quick] [--json FILE] [--plot FILE.png] [--backends native,onnxrt] [--cache DIR] [--rounds N]",
		Short: "Measure the backends side by side on GPT-2 124M and an SD-shaped VAE (random weights)",
		Long: `Creates deterministic random-weight models once (cached under --cache): GPT-2 124M as
safetensors for the native backend (and as int8 weights), the same weights exported to ONNX for
onnxrt, and an AutoencoderKL shaped like Stable Diffusion's at half width, in both forms. Then it
loads each model in a fresh plugin process of each backend and measures, exactly as modelrt
generate runs (one gRPC call per decode step, greedy sampling on the host): load time, prefill
of 64 tokens, decode tokens/s at batch 1, 2, 4 and 8 (128 new tokens per row), the plugin's peak
RSS (right after the load and after decoding), and VAE encode and decode of 256×256 images.
Every prefill, decode and VAE figure is the best of --reps measurements in the same process
(loads are measured once). --rounds N runs the whole sequence of rows N times, in fresh
processes, and keeps each figure's best over the rounds: on a shared machine whose speed drifts
over minutes, the rows then alternate instead of each getting one stretch of time. Before the
rows and after each it probes the streaming-read bandwidth over a buffer 8× the last-level cache
(1–4 GiB) and reports each batch-1 decode as a share of the median probe.
It prints a table with ratios against onnxrt, headed by the load average, and writes JSON
(--json) and a plot of tokens/s against batch size (--plot).

--backends takes plugin names or NAME=REF entries, REF being a plugin name or path, so that
two builds can be compared in one run: --backends native,before=/tmp/old/modelrt-native.

--quick uses a smaller shape (6 layers 384 wide, VAE [32,64,128,128] on 128×128) and runs in
well under a minute once its models are cached.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runBench(cmd, g, f) },
	}
	fl := cmd.Flags()
	fl.BoolVar(&f.quick, "quick", false, "smaller shape that finishes within a minute")
	fl.StringVar(&f.shape, "shape", "", "workload: full, quick or tiny (tiny is for tests)")
	_ = fl.MarkHidden("shape")
	fl.StringVar(&f.jsonPath, "json", "", "write the report as JSON to FILE")
	fl.StringVar(&f.plot, "plot", "", "draw decode tokens/s against batch size to FILE (.png, .svg or .pdf)")
	fl.StringVar(&f.backends, "backends", "native,onnxrt", "comma-separated backends to measure")
	fl.StringVar(&f.cache, "cache", "", "directory of the generated models (default: the user cache dir's modelrt/bench)")
	fl.BoolVar(&f.int8, "int8", true, "add a native row with int8 weights")
	fl.IntVar(&f.reps, "reps", 3, "measure each prefill, decode and VAE figure this many times and keep the best")
	fl.IntVar(&f.rounds, "rounds", 1, "run all rows this many times, alternating, and keep each figure's best")
	fl.StringArrayVar(&f.config, "config", nil, "backend config attribute BACKEND.KEY=VALUE, as in an HCL backend's config block (repeatable; e.g. onnxrt.allow_spinning=false)")
	return cmd
}

func runBench(cmd *cobra.Command, g *globals, f *benchFlags) error {
	name := f.shape
	switch {
	case name == "" && f.quick:
		name = "quick"
	case name == "":
		name = "full"
	case f.quick:
		return fmt.Errorf("--quick and --shape exclude each other")
	}
	shape, err := bench.ShapeByName(name)
	if err != nil {
		return err
	}
	var backends []string
	for _, b := range strings.Split(f.backends, ",") {
		if b = strings.TrimSpace(b); b != "" && !slices.Contains(backends, b) {
			backends = append(backends, b)
		}
	}
	if len(backends) == 0 {
		return fmt.Errorf("--backends is empty")
	}
	if f.reps < 1 {
		return fmt.Errorf("--reps %d: want at least 1", f.reps)
	}
	if f.rounds < 1 {
		return fmt.Errorf("--rounds %d: want at least 1", f.rounds)
	}
	hasNative := slices.ContainsFunc(backends, func(b string) bool { return bench.PluginKind(b) == "native" })
	config := map[string]map[string]any{}
	for _, c := range f.config {
		b, k, v, err := bench.ParseConfigFlag(c)
		if err != nil {
			return err
		}
		if config[b] == nil {
			config[b] = map[string]any{}
		}
		config[b][k] = v
	}
	cache := f.cache
	if cache == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("no --cache and no user cache directory: %w", err)
		}
		cache = filepath.Join(dir, "modelrt", "bench")
	}
	stderr := cmd.ErrOrStderr()
	start := time.Now()
	say := func(format string, args ...any) {
		fmt.Fprintf(stderr, "bench %6.1fs  %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	say("shape %s, models in %s", shape.Name, filepath.Join(cache, bench.CacheKey(shape)))
	models, err := bench.Prepare(cache, shape, f.int8 && hasNative, func(what string) {
		say("%s (once; cached)", what)
	})
	if err != nil {
		return err
	}
	rep, runErr := bench.Run(cmd.Context(), shape, models, bench.Options{
		Backends: backends, Int8: f.int8, Config: config, Reps: f.reps, Rounds: f.rounds,
		Start: func(ctx context.Context, b string) (bench.Backend, error) { return startBackend(ctx, g, b) },
		Progress: func(step, total int, what string) {
			say("[%d/%d] %s", step, total, what)
		},
	})
	if rep == nil {
		return runErr
	}
	if err := rep.WriteTable(cmd.OutOrStdout()); err != nil {
		return err
	}
	if f.jsonPath != "" {
		if err := rep.WriteJSON(f.jsonPath); err != nil {
			return err
		}
	}
	if f.plot != "" {
		if err := rep.Plot(f.plot); err != nil {
			return err
		}
	}
	say("done")
	return runErr
}
