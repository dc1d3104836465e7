package pipelines

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

const fixtures = "../testdata/pipelines/"

// pos renders a diagnostic's subject as file:line:col relative to the
// fixture directory.
func pos(d *hcl.Diagnostic) string {
	if d.Subject == nil {
		return "<no subject>"
	}
	return fmt.Sprintf("%s:%d:%d", strings.TrimPrefix(d.Subject.Filename, fixtures), d.Subject.Start.Line, d.Subject.Start.Column)
}

// wantOne asserts that diags is exactly one error with the given summary,
// a detail containing detail, at file:line:col.
func wantOne(t *testing.T, diags hcl.Diagnostics, files map[string]*hcl.File, summary, detail, at string) {
	t.Helper()
	if len(diags) != 1 {
		t.Fatalf("got %d diagnostics, want 1:\n%s", len(diags), render(t, diags, files))
	}
	d := diags[0]
	if d.Severity != hcl.DiagError {
		t.Errorf("severity %v, want error", d.Severity)
	}
	if d.Summary != summary {
		t.Errorf("summary %q, want %q", d.Summary, summary)
	}
	if !strings.Contains(d.Detail, detail) {
		t.Errorf("detail %q does not contain %q", d.Detail, detail)
	}
	if got := pos(d); got != at {
		t.Errorf("at %s, want %s", got, at)
	}
	// The rendered form (what `modelrt validate` prints) carries the same
	// message and a source snippet of the offending line.
	out := render(t, diags, files)
	if d.Subject != nil {
		line := fmt.Sprintf("%d: ", d.Subject.Start.Line)
		if !strings.Contains(out, line) {
			t.Errorf("rendered diagnostic has no snippet of line %d:\n%s", d.Subject.Start.Line, out)
		}
	}
	if !strings.Contains(out, summary) {
		t.Errorf("rendered diagnostic lacks %q:\n%s", summary, out)
	}
}

func TestBadFixtures(t *testing.T) {
	cases := []struct {
		file, summary, detail, at string
	}{
		{"bad/syntax.hcl", "Invalid expression", "Expected the start of an expression", "bad/syntax.hcl:7:13"},
		{"bad/unknown_block.hcl", "Unsupported block type", `Blocks of type "resource" are not expected here`, "bad/unknown_block.hcl:5:1"},
		{"bad/unknown_attribute.hcl", "Unsupported argument",
			`An argument named "max_new_token" is not expected here. Did you mean "max_new_tokens"?`, "bad/unknown_attribute.hcl:18:5"},
		{"bad/wrong_type.hcl", "Incorrect attribute value type",
			`Inappropriate value for stage input "max_new_tokens": a number is required`, "bad/wrong_type.hcl:18:22"},
		{"bad/wrong_type_ref.hcl", "Incorrect attribute value type",
			`Inappropriate value for stage input "text": string required, but have list of number`, "bad/wrong_type_ref.hcl:23:17"},
		{"bad/missing_stage.hcl", "Reference to undeclared stage",
			`Pipeline "complete" has no stage named "gne". Did you mean "gen"?`, "bad/missing_stage.hcl:23:17"},
		{"bad/missing_model.hcl", "Reference to undeclared model",
			`No model named "gtp2" is declared. Did you mean "gpt2"?`, "bad/missing_model.hcl:16:14"},
		{"bad/missing_input.hcl", "Reference to undeclared input",
			`Pipeline "complete" declares no input named "promt". Did you mean "prompt"?`, "bad/missing_input.hcl:17:14"},
		{"bad/missing_output.hcl", "Unsupported stage output",
			`Stage "ids" (use = "tokenize") has no output "tokens"; its outputs are: ids.`, "bad/missing_output.hcl:23:26"},
		{"bad/cycle.hcl", "Cycle between stages",
			`stage "a" → stage "b" → stage "a"`, "bad/cycle.hcl:15:17"},
		{"bad/duplicate.hcl", `Duplicate model "gpt2"`,
			`A model named "gpt2" was already declared at ../testdata/pipelines/bad/duplicate.hcl:5:1.`, "bad/duplicate.hcl:11:1"},
		{"bad/duplicate_stage.hcl", `Duplicate stage "ids"`,
			`already declared at ../testdata/pipelines/bad/duplicate_stage.hcl:12:3. Names must be unique within pipeline "complete"`, "bad/duplicate_stage.hcl:18:3"},
		{"bad/dup-across", `Duplicate backend "native"`,
			`A backend named "native" was already declared at ../testdata/pipelines/bad/dup-across/a.hcl:1:1. Names must be unique across all files`, "bad/dup-across/b.hcl:3:1"},
		{"bad/unknown_use.hcl", "Unknown stage type",
			`There is no stage type "genrate". Did you mean "generate"?`, "bad/unknown_use.hcl:15:14"},
		{"bad/backend_config.hcl", "Unsupported argument",
			`An argument named "graph_optimization" is not expected here.`, "bad/backend_config.hcl:5:5"},
		{"bad/model_path.hcl", "Model path does not exist",
			`testdata/pipelines/bad/models/no-such-model does not exist (relative paths are relative to the configuration directory`, "bad/model_path.hcl:7:13"},
		{"bad/task_mismatch.hcl", "Invalid value for stage input",
			`model "gpt2" has task "causal-lm"; this needs a model with task "vae"`, "bad/task_mismatch.hcl:14:13"},
		{"bad/no_prompt.hcl", "Missing stage input",
			`Stage "gen" (use = "generate") needs exactly one of input_ids | prompt.`, "bad/no_prompt.hcl:12:3"},
		{"bad/keep_alive.hcl", "Invalid keep_alive",
			`Model "gpt2": keep_alive "5 minutes" must be a duration like "300ms", "5m" or "1h30m"`, "bad/keep_alive.hcl:9:16"},
		{"bad/local_cycle.hcl", "Cycle between local values", "local.a → local.b → local.a", "bad/local_cycle.hcl:2:10"},
		{"bad/file_escape.hcl", "Invalid function argument",
			`path "../../../go.mod" leaves the configuration directory`, "bad/file_escape.hcl:2:18"},
		{"bad/env_prefix.hcl", "Invalid function argument",
			`env() reads only variables whose name starts with MODELRT_, not "HOME"`, "bad/env_prefix.hcl:2:15"},
		{"bad/required_variable.hcl", "No value for required variable",
			`Variable "model_dir" has no default; give it a value with -var model_dir=...`, "bad/required_variable.hcl:1:1"},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			cfg, diags := Load(fixtures+c.file, LoadOptions{BackendSchemas: testSchemas})
			wantOne(t, diags, cfg.Files, c.summary, c.detail, c.at)
			// Validate reports the same diagnostics.
			if v := Validate(fixtures+c.file, LoadOptions{BackendSchemas: testSchemas}); len(v) != len(diags) {
				t.Errorf("Validate: %d diagnostics, Load: %d", len(v), len(diags))
			}
		})
	}
}
