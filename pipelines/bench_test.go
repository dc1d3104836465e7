package pipelines

import (
	"testing"

	"github.com/zclconf/go-cty/cty"
)

// BenchmarkLoad measures loading (parse, decode, reference checks, DAG and
// static type check) of the text completion fixture: the cost `modelrt
// validate` and each `modelrt run` pay once.
func BenchmarkLoad(b *testing.B) {
	for b.Loop() {
		if _, diags := Load(completeNative, LoadOptions{BackendSchemas: testSchemas}); diags.HasErrors() {
			b.Fatal(diags.Error())
		}
	}
}

// BenchmarkEvalStage measures evaluating the generate stage's attributes,
// paid once per stage per run.
func BenchmarkEvalStage(b *testing.B) {
	cfg, diags := Load(completeNative, LoadOptions{})
	if diags.HasErrors() {
		b.Fatal(diags.Error())
	}
	p := cfg.Pipelines["complete"]
	inputs, _ := p.BindInputs(map[string]string{"prompt": "Hello"})
	ids := make([]int, 64)
	v := Values{Inputs: inputs, Stages: map[string]map[string]cty.Value{"ids": {"ids": TokenIDsVal(ids)}}}
	s := p.Stage("gen")
	for b.Loop() {
		if _, diags := EvalStage(s, v); diags.HasErrors() {
			b.Fatal(diags.Error())
		}
	}
}
