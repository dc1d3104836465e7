package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/spf13/cobra"

	"github.com/modelrt/modelrt/pipelines"
	"github.com/modelrt/modelrt/runtime/engine"
	"github.com/modelrt/modelrt/runtime/plugin"
)

// init accepts Terraform's single-dash `-var k=v` (docs/contracts.md#the-cli) by rewriting it to the `--var`
// that pflag parses: pflag would read `-var` as the shorthands -v -a -r, which modelrt does not
// have. Arguments after `--` are left alone.
func init() {
	for i, a := range os.Args[1:] {
		if a == "--" {
			break
		}
		if a == "-var" || strings.HasPrefix(a, "-var=") {
			os.Args[i+1] = "-" + a
		}
	}
}

// configFlags are the flags validate and run share.
type configFlags struct {
	vars        []string
	noPathCheck bool
	offline     bool
}

func (f *configFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVar(&f.vars, "var", nil, "set a variable: -var name=value (repeatable)")
	fl.BoolVar(&f.noPathCheck, "no-path-check", false, "do not check that model paths exist")
	fl.BoolVar(&f.offline, "offline", false, "do not start the plugins to check backend config blocks against their schemas")
}

// parseAssignments parses name=value pairs of a repeatable flag.
func parseAssignments(flag string, items []string) (map[string]string, error) {
	out := map[string]string{}
	for _, it := range items {
		name, value, ok := strings.Cut(it, "=")
		if !ok || strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("--%s %q: want name=value", flag, it)
		}
		out[strings.TrimSpace(name)] = value
	}
	return out, nil
}

// loadConfig loads a configuration the way validate and run do: -var values bound, and backend
// config blocks checked against the schemas the plugins report (each plugin is started and
// described once).
func loadConfig(ctx context.Context, g *globals, f *configFlags, path string) (*pipelines.Config, hcl.Diagnostics, error) {
	vars, err := parseAssignments("var", f.vars)
	if err != nil {
		return nil, nil, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("configuration: %w", err)
	}
	dir := path
	if !st.IsDir() {
		dir = filepath.Dir(path)
	}
	opts := pipelines.LoadOptions{Vars: vars, NoPathCheck: f.noPathCheck}
	if !f.offline {
		opts.BackendSchemas = engine.Schemas(ctx, engine.SchemaOptions{Dir: dir, PluginDirs: plugin.SearchDirs(g.pluginDir), LogLevel: g.logLevel})
	}
	cfg, diags := pipelines.Load(path, opts)
	return cfg, diags, nil
}

// writeDiagnostics renders diagnostics with their source snippets, then one
// `file:line:col: severity: summary` line each, the form editors and grep understand.
func writeDiagnostics(w io.Writer, diags hcl.Diagnostics, files map[string]*hcl.File) {
	if len(diags) == 0 {
		return
	}
	pipelines.WriteDiagnostics(w, diags, files)
	errs, warns := 0, 0
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			errs++
		} else {
			warns++
		}
	}
	fmt.Fprintf(w, "%d error(s), %d warning(s):\n", errs, warns)
	for _, d := range diags {
		sev := "error"
		if d.Severity != hcl.DiagError {
			sev = "warning"
		}
		if d.Subject != nil {
			fmt.Fprintf(w, "  %s:%d:%d: %s: %s\n", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column, sev, d.Summary)
		} else {
			fmt.Fprintf(w, "  %s: %s\n", sev, d.Summary)
		}
	}
}

func newValidateCmd(g *globals) *cobra.Command {
	f := &configFlags{}
	cmd := &cobra.Command{
		Use:   "validate FILE.hcl|DIR",
		Short: "Check a pipeline configuration and report every problem with file:line:col",
		Long: `Loads a pipeline configuration (a .hcl file, or every .hcl file of a directory) without
running it: syntax, unknown blocks and attributes, references, stage types, the types of stage
attributes, cycles between stages, model paths, and each backend's config block against the
schema its plugin reports (the plugins are started to ask; --offline skips that). Every
diagnostic is printed at once with its source snippet; the exit status is 1 on any error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, diags, err := loadConfig(cmd.Context(), g, f, args[0])
			if err != nil {
				return err
			}
			writeDiagnostics(cmd.ErrOrStderr(), diags, cfg.Files)
			if diags.HasErrors() {
				return exitError{1}
			}
			names := cfg.PipelineNames()
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid (%d pipeline(s): %s; %d model(s), %d backend(s))\n",
				args[0], len(names), strings.Join(names, ", "), len(cfg.Models), len(cfg.Backends))
			return nil
		},
	}
	f.register(cmd)
	return cmd
}
