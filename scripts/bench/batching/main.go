// Command batching is the Go half of scripts/bench/batching.sh.
//
//	go run ./scripts/bench/batching models -cache DIR -out DIR
//
// writes (once; modelrt bench's cache) GPT-2 124M with modelrt bench's random weights, as
// safetensors and as its ONNX export, and lays out DIR/gpt2-native and DIR/gpt2-onnx: links
// to those files beside the GPT-2 tokenizer of testdata/models/gpt2-tiny, so that `modelrt
// serve` can take text prompts.
//
//	go run ./scripts/bench/batching summary -native N.json -onnxrt O.json -demo D.json -out S.json
//
// reads cmd/loadgen's -out files and prints the targets as a Markdown table
// (tokens/s at 8 streams against 1, inter-token p50 at 8 against 1, a newcomer's time to first
// token beside 7 decoding streams against idle, the demo model's completions/s at 16 against
// 1), writing the same figures to S.json.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/modelrt/modelrt/runtime/bench"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: batching models|summary [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "models":
		err = models(os.Args[2:])
	case "summary":
		err = summary(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q (want models or summary)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "batching:", err)
		os.Exit(1)
	}
}

func models(args []string) error {
	fs := flag.NewFlagSet("models", flag.ExitOnError)
	cache := fs.String("cache", "", "modelrt bench's model cache (default: the user cache dir's modelrt/bench)")
	out := fs.String("out", "", "directory for the served model directories")
	tok := fs.String("tokenizer", "testdata/models/gpt2-tiny", "directory with GPT-2's encoder.json and vocab.bpe")
	fs.Parse(args)
	if *out == "" {
		return fmt.Errorf("models: -out is required")
	}
	if *cache == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("models: no -cache and no user cache directory: %w", err)
		}
		*cache = filepath.Join(dir, "modelrt", "bench")
	}
	shape, err := bench.ShapeByName("full")
	if err != nil {
		return err
	}
	m, err := bench.Prepare(*cache, shape, false, func(what string) { fmt.Fprintf(os.Stderr, "batching: %s (once; cached in %s)\n", what, *cache) })
	if err != nil {
		return err
	}
	tokAbs, err := filepath.Abs(*tok)
	if err != nil {
		return err
	}
	for _, d := range []struct {
		name, src string
		files     []string
	}{
		{"gpt2-native", m.GPT2, []string{"config.json", "model.safetensors"}},
		{"gpt2-onnx", m.GPT2ONNX, []string{"config.json", "model.onnx"}},
	} {
		dir := filepath.Join(*out, d.name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		links := map[string]string{"encoder.json": filepath.Join(tokAbs, "encoder.json"), "vocab.bpe": filepath.Join(tokAbs, "vocab.bpe")}
		for _, f := range d.files {
			links[f] = filepath.Join(d.src, f)
		}
		for name, target := range links {
			if _, err := os.Stat(target); err != nil {
				return fmt.Errorf("models: %w", err)
			}
			p := filepath.Join(dir, name)
			os.Remove(p)
			if err := os.Symlink(target, p); err != nil {
				return err
			}
		}
		fmt.Println(dir)
	}
	return nil
}

// loadgen's -out file: the fields the summary reads.
type report struct {
	Label     string  `json:"label"`
	MaxTokens int     `json:"max_tokens"`
	Levels    []level `json:"levels"`
	Newcomer  *struct {
		Streams   int     `json:"streams"`
		IdleP50MS float64 `json:"idle_first_token_p50_ms"`
		IdleP99MS float64 `json:"idle_first_token_p99_ms"`
		BusyP50MS float64 `json:"busy_first_token_p50_ms"`
		BusyP99MS float64 `json:"busy_first_token_p99_ms"`
	} `json:"newcomer"`
}

type level struct {
	Concurrency   int     `json:"concurrency"`
	Requests      int     `json:"requests"`
	Errors        int     `json:"errors"`
	CompletionsPS float64 `json:"completions_per_s"`
	TokensPS      float64 `json:"tokens_per_s"`
	FirstTokenP50 float64 `json:"first_token_p50_ms"`
	FirstTokenP99 float64 `json:"first_token_p99_ms"`
	InterTokenP50 float64 `json:"inter_token_p50_ms"`
	InterTokenP99 float64 `json:"inter_token_p99_ms"`
	MeanTokens    float64 `json:"mean_tokens"`
}

func read(path string) (*report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

func (r *report) at(n int) (level, error) {
	for _, l := range r.Levels {
		if l.Concurrency == n {
			return l, nil
		}
	}
	return level{}, fmt.Errorf("no level at concurrency %d", n)
}

// target is one of the targets on one backend.
type target struct {
	Backend string  `json:"backend"`
	What    string  `json:"what"`
	Value   float64 `json:"value"`
	Base    float64 `json:"base"`
	Ratio   float64 `json:"ratio"`
	Want    string  `json:"want"`
	Met     bool    `json:"met"`
}

func summary(args []string) error {
	fs := flag.NewFlagSet("summary", flag.ExitOnError)
	nat := fs.String("native", "", "loadgen -out of the native backend")
	onx := fs.String("onnxrt", "", "loadgen -out of the onnxrt backend")
	demo := fs.String("demo", "", "loadgen -out of the demo model")
	out := fs.String("out", "", "write the targets as JSON")
	fs.Parse(args)
	var targets []target
	var levels []string
	for _, b := range []struct{ name, path string }{{"native", *nat}, {"onnxrt", *onx}} {
		if b.path == "" {
			continue
		}
		r, err := read(b.path)
		if err != nil {
			return err
		}
		for _, l := range r.Levels {
			levels = append(levels, fmt.Sprintf("| %s | %d | %d | %d | %.1f | %.1f / %.1f | %.1f / %.1f | %.0f |",
				b.name, l.Concurrency, l.Requests, l.Errors, l.TokensPS, l.InterTokenP50, l.InterTokenP99, l.FirstTokenP50, l.FirstTokenP99, l.MeanTokens))
		}
		one, err := r.at(1)
		if err != nil {
			return fmt.Errorf("%s: %w", b.path, err)
		}
		eight, err := r.at(8)
		if err != nil {
			return fmt.Errorf("%s: %w", b.path, err)
		}
		targets = append(targets,
			ratio(b.name, "tokens/s, 8 streams vs 1", eight.TokensPS, one.TokensPS, "≥ 3×", func(x float64) bool { return x >= 3 }),
			ratio(b.name, "inter-token p50 ms, 8 streams vs 1", eight.InterTokenP50, one.InterTokenP50, "≤ 3×", func(x float64) bool { return x <= 3 }))
		if nc := r.Newcomer; nc != nil {
			targets = append(targets, ratio(b.name, fmt.Sprintf("newcomer first token p50 ms, beside %d streams vs idle", nc.Streams),
				nc.BusyP50MS, nc.IdleP50MS, "≤ 2×", func(x float64) bool { return x <= 2 }))
		}
	}
	if *demo != "" {
		r, err := read(*demo)
		if err != nil {
			return err
		}
		one, err := r.at(1)
		if err != nil {
			return fmt.Errorf("%s: %w", *demo, err)
		}
		sixteen, err := r.at(16)
		if err != nil {
			return fmt.Errorf("%s: %w", *demo, err)
		}
		targets = append(targets, ratio("native (demo gpt2-go)", "completions/s, 16 vs 1", sixteen.CompletionsPS, one.CompletionsPS, "≥ 3×", func(x float64) bool { return x >= 3 }))
	}
	fmt.Println("| backend | streams | requests | errors | tokens/s | inter-token p50 / p99 ms | first token p50 / p99 ms | mean tokens |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, l := range levels {
		fmt.Println(l)
	}
	fmt.Println()
	fmt.Println("| backend | figure | value | base | ratio | target | met |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, t := range targets {
		fmt.Printf("| %s | %s | %.1f | %.1f | %.2f× | %s | %s |\n", t.Backend, t.What, t.Value, t.Base, t.Ratio, t.Want, map[bool]string{true: "yes", false: "no"}[t.Met])
	}
	if *out != "" {
		b, err := json.MarshalIndent(map[string]any{"targets": targets}, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(*out, append(b, '\n'), 0o644)
	}
	return nil
}

func ratio(backend, what string, v, base float64, want string, ok func(float64) bool) target {
	t := target{Backend: backend, What: what, Value: v, Base: base, Want: want}
	if base > 0 {
		t.Ratio = v / base
		t.Met = ok(t.Ratio)
	}
	return t
}
