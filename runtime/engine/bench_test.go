package engine

import (
	"context"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"github.com/modelrt/modelrt/pipelines"
)

// BenchmarkRunHostStages measures the engine's own cost per run: scheduling, evaluation and
// two host-only stages (tokenize → detokenize), no backend call.
func BenchmarkRunHostStages(b *testing.B) {
	cfg := load(b, header+`
pipeline "p" {
  stage "ids" {
    use       = "tokenize"
    tokenizer = model.gpt2
    text      = "The quick brown fox jumps over the lazy dog"
  }
  stage "text" {
    use       = "detokenize"
    tokenizer = model.gpt2
    ids       = stage.ids.ids
  }
  output "text" {
    value = stage.text.text
  }
}
`)
	e, err := New(context.Background(), cfg, Options{PluginDirs: []string{pluginDir}})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Run(context.Background(), "p", nil, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRunGenerate runs a 16-token greedy generate stage on gpt2-tiny through the native
// plugin: one gRPC Infer per token.
func BenchmarkRunGenerate(b *testing.B) {
	cfg := load(b, header+`
pipeline "p" {
  input "ids" {
    type = list(number)
  }
  stage "gen" {
    use            = "generate"
    model          = model.gpt2
    input_ids      = input.ids
    max_new_tokens = 16
  }
  output "ids" {
    value = stage.gen.ids
  }
}
`)
	e, err := New(context.Background(), cfg, Options{PluginDirs: []string{pluginDir}})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	in := map[string]cty.Value{"ids": pipelines.TokenIDsVal([]int64{464, 3290, 11})}
	var tokens int
	for b.Loop() {
		res, err := e.Run(context.Background(), "p", in, nil)
		if err != nil {
			b.Fatal(err)
		}
		tokens += res.Stages[0].Generate.GeneratedTokens
	}
	b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
}
