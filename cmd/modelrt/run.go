package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/zclconf/go-cty/cty"

	"github.com/modelrt/modelrt/pipelines"
	"github.com/modelrt/modelrt/runtime/engine"
	"github.com/modelrt/modelrt/runtime/plugin"
	"github.com/modelrt/modelrt/sdk"
)

type runFlags struct {
	configFlags
	pipeline string
	inputs   []string
	output   string
}

func newRunCmd(g *globals) *cobra.Command {
	f := &runFlags{}
	cmd := &cobra.Command{
		Use:   "run FILE.hcl|DIR [--pipeline NAME] [-var k=v]... [--input k=v]...",
		Short: "Run a pipeline of an HCL configuration through the backend plugins",
		Long: `Loads the configuration (as validate does), starts the backends the pipeline needs, loads
its models (progress on stderr), binds --input values to the pipeline's inputs (text converted to
each input's type; lists and objects as HCL expressions: --input 'ids=[1, 2]'), and runs the
stages, independent ones concurrently. Generated text streams to stdout as it comes; then every
output is printed (strings as text, tensors as dtype and shape, the paths image.save wrote) and
the stages' timings go to stderr. --output json prints one JSON object with the outputs and
timings instead. --pipeline may be left out when the configuration has one pipeline.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runPipeline(cmd, g, f, args[0]) },
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&f.pipeline, "pipeline", "", "pipeline to run (default: the only one)")
	fl.StringArrayVar(&f.inputs, "input", nil, "set a pipeline input: --input name=value (repeatable)")
	fl.StringVarP(&f.output, "output", "o", "text", "output format: text or json")
	return cmd
}

func runPipeline(cmd *cobra.Command, g *globals, f *runFlags, path string) error {
	ctx := cmd.Context()
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	if f.output != "text" && f.output != "json" {
		return fmt.Errorf("--output %q: want text or json", f.output)
	}
	raw, err := parseAssignments("input", f.inputs)
	if err != nil {
		return err
	}
	cfg, diags, err := loadConfig(ctx, g, &f.configFlags, path)
	if err != nil {
		return err
	}
	writeDiagnostics(stderr, diags, cfg.Files)
	if diags.HasErrors() {
		return exitError{1}
	}
	name, err := choosePipeline(cfg, f.pipeline)
	if err != nil {
		return err
	}

	e, err := engine.New(ctx, cfg, engine.Options{
		PluginDirs: plugin.SearchDirs(g.pluginDir), LogLevel: g.logLevel,
		Pipelines: []string{name}, Progress: progressPrinter(stderr),
	})
	if err != nil {
		return err
	}
	defer e.Close()
	inputs, err := e.BindText(name, raw)
	if err == nil {
		obs := &streamObserver{w: stdout}
		if f.output == "json" {
			obs.w = nil
		}
		var res *engine.Result
		res, err = e.Run(ctx, name, inputs, obs)
		if err == nil {
			if f.output == "json" {
				return writeRunJSON(stdout, res)
			}
			if obs.streamed {
				fmt.Fprint(stdout, "\n\n── outputs ──\n")
			}
			writeOutputs(stdout, cfg.Pipelines[name], res, obs.text.String())
			writeTimings(stderr, res)
			return nil
		}
	}
	var de *engine.DiagnosticsError
	if errors.As(err, &de) {
		writeDiagnostics(stderr, de.Diags, cfg.Files)
		return exitError{1}
	}
	return err
}

// choosePipeline returns --pipeline, or the configuration's only pipeline.
func choosePipeline(cfg *pipelines.Config, name string) (string, error) {
	names := cfg.PipelineNames()
	switch {
	case name != "":
		if cfg.Pipelines[name] == nil {
			return "", fmt.Errorf("--pipeline %q: the configuration has %s", name, strings.Join(names, ", "))
		}
		return name, nil
	case len(names) == 1:
		return names[0], nil
	case len(names) == 0:
		return "", fmt.Errorf("the configuration has no pipeline block")
	}
	return "", fmt.Errorf("the configuration has %d pipelines (%s): choose one with --pipeline", len(names), strings.Join(names, ", "))
}

// progressPrinter shows backend starts and model loads on stderr, one line when each is done.
func progressPrinter(w io.Writer) func(engine.Progress) {
	return func(p engine.Progress) {
		if !p.Done || p.Phase == "ready" {
			if !p.Done && p.Phase == "load" {
				fmt.Fprintf(w, "loading model %s (%d/%d)...\n", p.Name, p.Index, p.Total)
			}
			return
		}
		verb := "started backend"
		if p.Phase == "load" {
			verb = "loaded model"
		}
		fmt.Fprintf(w, "%s %s (%d/%d) in %s\n", verb, p.Name, p.Index, p.Total, p.Elapsed.Round(time.Millisecond))
	}
}

// streamObserver writes generated text to w as it comes. When several generate stages run at
// once, only the first one to produce text streams, so that two streams never interleave; the
// others' text is in the outputs.
type streamObserver struct {
	engine.NopObserver
	w        io.Writer // nil: do not stream (JSON output)
	mu       sync.Mutex
	stage    string
	streamed bool
	text     strings.Builder // what was streamed
}

func (o *streamObserver) OnText(stage string, row int, delta string) {
	if o.w == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stage == "" {
		o.stage = stage
	}
	if o.stage != stage || row != 0 {
		return
	}
	if !o.streamed {
		fmt.Fprintf(o.w, "── stage %s (streaming) ──\n", stage)
	}
	fmt.Fprint(o.w, delta)
	o.text.WriteString(delta)
	o.streamed = true
}

// writeOutputs prints each output as `name: value`; a string with newlines starts on its own
// line, and a string that is exactly the text streamed above is not printed twice.
func writeOutputs(w io.Writer, p *pipelines.Pipeline, res *engine.Result, streamed string) {
	for _, out := range p.Outputs {
		v := res.Outputs[out.Name]
		if v.Type() == cty.String && !v.IsNull() && v.IsKnown() {
			if s := v.AsString(); streamed != "" && s == streamed {
				fmt.Fprintf(w, "%s: (the text streamed above)\n", out.Name)
				continue
			} else if strings.Contains(s, "\n") {
				fmt.Fprintf(w, "%s:\n%s\n", out.Name, s)
				continue
			}
			fmt.Fprintf(w, "%s: %s\n", out.Name, v.AsString())
			continue
		}
		fmt.Fprintf(w, "%s: %s\n", out.Name, valueText(v))
	}
}

// valueText renders a non-string output on one line: tensors by dtype and shape, everything
// else as JSON.
func valueText(v cty.Value) string {
	if v.Type().IsCapsuleType() {
		t, err := engine.TensorOf(v)
		if err != nil {
			return err.Error()
		}
		return fmt.Sprintf("%s %s %v", v.Type().FriendlyName(), t.DType, t.Shape)
	}
	b, err := json.Marshal(jsonValue(v, false))
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func writeTimings(w io.Writer, res *engine.Result) {
	parts := make([]string, 0, len(res.Stages))
	for _, s := range res.Stages {
		p := fmt.Sprintf("%s %s", s.Stage, ms(s.Duration))
		if gs := s.Generate; gs != nil {
			p += fmt.Sprintf(" (%d tokens, %.0f tok/s, %s)", gs.GeneratedTokens, gs.DecodeTokensPerS, gs.FinishReason)
		}
		parts = append(parts, p)
	}
	fmt.Fprintf(w, "pipeline %s: %s total; %s\n", res.Pipeline, ms(res.Total), strings.Join(parts, " · "))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/1e6) }

// maxJSONElements bounds the tensor data --output json includes; a larger tensor is described
// by dtype and shape only (logits of a real vocabulary would be megabytes of JSON).
const maxJSONElements = 1 << 16

// runJSON is the --output json document.
type runJSON struct {
	Pipeline string               `json:"pipeline"`
	Outputs  map[string]any       `json:"outputs"`
	TotalMS  float64              `json:"total_ms"`
	Stages   []engine.StageReport `json:"stages"`
}

type tensorJSON struct {
	Kind  string    `json:"kind"` // image or tensor
	DType sdk.DType `json:"dtype"`
	Shape []int64   `json:"shape"`
	Data  any       `json:"data,omitempty"`
}

func writeRunJSON(w io.Writer, res *engine.Result) error {
	doc := runJSON{Pipeline: res.Pipeline, Outputs: map[string]any{}, TotalMS: float64(res.Total) / 1e6, Stages: []engine.StageReport{}}
	for _, k := range slices.Sorted(maps.Keys(res.Outputs)) {
		doc.Outputs[k] = jsonValue(res.Outputs[k], true)
	}
	for _, s := range res.Stages {
		doc.Stages = append(doc.Stages, s.Report())
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

// jsonValue converts an output value to JSON-encodable Go values; tensors become tensorJSON,
// with their data when withData and small enough.
func jsonValue(v cty.Value, withData bool) any {
	if v.IsNull() || !v.IsKnown() {
		return nil
	}
	ty := v.Type()
	switch {
	case ty.IsCapsuleType():
		t, err := engine.TensorOf(v)
		if err != nil {
			return err.Error()
		}
		tj := tensorJSON{Kind: ty.FriendlyName(), DType: t.DType, Shape: t.Shape}
		if withData && t.Len() <= maxJSONElements {
			switch t.DType {
			case sdk.Float32:
				tj.Data, _ = t.Float32s()
			case sdk.Int64, sdk.Int32:
				tj.Data, _ = t.Int64s()
			}
		}
		return tj
	case ty == cty.String:
		return v.AsString()
	case ty == cty.Bool:
		return v.True()
	case ty == cty.Number:
		if n, acc := v.AsBigFloat().Int64(); acc == big.Exact {
			return n
		}
		f, _ := v.AsBigFloat().Float64()
		return f
	case ty.IsListType() || ty.IsSetType() || ty.IsTupleType():
		out := []any{}
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			out = append(out, jsonValue(e, withData))
		}
		return out
	case ty.IsMapType() || ty.IsObjectType():
		out := map[string]any{}
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			out[k.AsString()] = jsonValue(e, withData)
		}
		return out
	}
	return ty.FriendlyName()
}
