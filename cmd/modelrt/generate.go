package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/modelrt/modelrt/runtime/generate"
	"github.com/modelrt/modelrt/runtime/lm"
	"github.com/modelrt/modelrt/runtime/plugin"
	"github.com/modelrt/modelrt/runtime/tokenizer"
)

type generateFlags struct {
	model, backend, prompt, ids string
	maxNew                      int
	sampling                    generate.Sampling
	stop                        []string
	asJSON                      bool
}

func newGenerateCmd(g *globals) *cobra.Command {
	f := &generateFlags{sampling: generate.DefaultSampling()}
	cmd := &cobra.Command{
		Use:   "generate --model DIR (--prompt TEXT | --ids 1,2,3)",
		Short: "Generate text with a causal LM through a backend plugin",
		Long: `Loads the model directory in the chosen backend plugin (a separate process), tokenizes the
prompt on the host, and runs the decode loop here: one inference call per new token, sampled by
the host so that every backend is sampled by the same code. Text streams to stdout as it is
generated; --json prints one object at the end instead. Temperature 0 means greedy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runGenerate(cmd, g, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.model, "model", "", "model directory")
	fl.StringVar(&f.backend, "backend", "native", "backend plugin: native, onnxrt, or a plugin path")
	fl.StringVar(&f.prompt, "prompt", "", "prompt text")
	fl.StringVar(&f.ids, "ids", "", "prompt as comma-separated token ids (instead of --prompt)")
	fl.IntVar(&f.maxNew, "max-new-tokens", 32, "tokens to generate at most")
	fl.Float64Var(&f.sampling.Temperature, "temperature", f.sampling.Temperature, "sampling temperature; 0 = greedy")
	fl.IntVar(&f.sampling.TopK, "top-k", f.sampling.TopK, "keep the k most likely tokens (0 = all)")
	fl.Float64Var(&f.sampling.TopP, "top-p", f.sampling.TopP, "nucleus sampling: keep the smallest set with this probability mass")
	fl.Float64Var(&f.sampling.RepetitionPenalty, "repetition-penalty", f.sampling.RepetitionPenalty, "penalty for tokens already present (1 = none)")
	fl.Uint64Var(&f.sampling.Seed, "seed", f.sampling.Seed, "random seed")
	fl.StringArrayVar(&f.stop, "stop", nil, "stop string (repeatable)")
	fl.BoolVar(&f.asJSON, "json", false, "print one JSON object with ids, text and timings")
	return cmd
}

// generateJSON is the --json output (a fixed contract: docs/contracts.md#the-cli).
type generateJSON struct {
	IDs              []int   `json:"ids"`
	Text             string  `json:"text"`
	PromptTokens     int     `json:"prompt_tokens"`
	GeneratedTokens  int     `json:"generated_tokens"`
	PrefillMS        float64 `json:"prefill_ms"`
	DecodeTokensPerS float64 `json:"decode_tokens_per_s"`
	FinishReason     string  `json:"finish_reason"`
}

func parseIDs(s string) ([]int, error) {
	var out []int
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		v, err := strconv.Atoi(part)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("--ids: item %d %q is not a token id", i+1, part)
		}
		out = append(out, v)
	}
	return out, nil
}

func runGenerate(cmd *cobra.Command, g *globals, f *generateFlags) error {
	ctx := cmd.Context()
	if f.model == "" {
		return fmt.Errorf("generate needs --model DIR")
	}
	if (f.prompt == "") == (f.ids == "") {
		return fmt.Errorf("generate needs exactly one of --prompt TEXT or --ids 1,2,3 (an empty prompt cannot be generated from)")
	}
	if f.maxNew <= 0 {
		return fmt.Errorf("--max-new-tokens must be positive, got %d", f.maxNew)
	}
	if err := f.sampling.Validate(); err != nil {
		return err
	}
	dir, err := filepath.Abs(f.model)
	if err != nil {
		return err
	}
	tok, tokErr := tokenizer.Load(dir)
	var prompt []int
	if f.ids != "" {
		if prompt, err = parseIDs(f.ids); err != nil {
			return err
		}
		if len(prompt) == 0 {
			return fmt.Errorf("--ids is empty")
		}
	} else {
		if tokErr != nil {
			return fmt.Errorf("--prompt needs a tokenizer in %s: %w", f.model, tokErr)
		}
		prompt = tok.Encode(f.prompt)
	}

	p, err := startBackend(ctx, g, f.backend)
	if err != nil {
		return err
	}
	defer p.Close()
	m, err := lm.Load(ctx, p, "model", dir, nil)
	if err != nil {
		return fmt.Errorf("load %s in %s: %w", f.model, p.Name(), err)
	}
	m.Linger = lm.DecodeLinger // this loop is the only work of the process
	sess, err := m.Open(ctx, 1)
	if err != nil {
		return err
	}
	defer sess.Close()

	opts := generate.Options{MaxNewTokens: f.maxNew, MaxContext: m.Context, Sampling: f.sampling, StopStrings: f.stop}
	if m.EOS >= 0 {
		opts.EOS = []int{m.EOS}
	}
	out := cmd.OutOrStdout()
	if tokErr == nil {
		opts.Decoder = tok
		opts.NewStreamDecoder = func() generate.StreamDecoder { return tok.NewStreamDecoder() }
		if !f.asJSON {
			opts.OnText = func(_ int, delta string) { fmt.Fprint(out, delta) }
		}
	} else if len(f.stop) > 0 {
		return fmt.Errorf("--stop needs a tokenizer in %s: %w", f.model, tokErr)
	}
	if !f.asJSON && tokErr == nil {
		fmt.Fprint(out, tok.Decode(prompt))
	}
	res, err := generate.Generate(ctx, sess, [][]int{prompt}, opts)
	if err != nil {
		return err
	}
	row := res.Rows[0]
	if f.asJSON {
		enc := json.NewEncoder(out)
		return enc.Encode(generateJSON{
			IDs: row.IDs, Text: row.Text, PromptTokens: row.PromptTokens, GeneratedTokens: row.GeneratedTokens,
			PrefillMS: res.PrefillMS, DecodeTokensPerS: res.DecodeTokensPerS, FinishReason: row.FinishReason,
		})
	}
	if tokErr != nil {
		fmt.Fprintln(out, strings.Trim(fmt.Sprint(row.IDs), "[]"))
	} else {
		fmt.Fprintln(out)
	}
	slog.Info("generated", "prompt_tokens", row.PromptTokens, "generated_tokens", row.GeneratedTokens,
		"prefill_ms", res.PrefillMS, "decode_tokens_per_s", res.DecodeTokensPerS, "finish", row.FinishReason)
	return nil
}

// startBackend resolves and starts a backend plugin by name or path.
func startBackend(ctx context.Context, g *globals, ref string) (*plugin.Plugin, error) {
	dirs := plugin.SearchDirs(g.pluginDir)
	path, err := plugin.Resolve(ref, dirs)
	if err != nil {
		return nil, err
	}
	return plugin.Start(ctx, plugin.Config{Name: ref, Path: path, LogLevel: g.logLevel})
}
