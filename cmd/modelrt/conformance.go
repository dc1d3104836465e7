package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/modelrt/modelrt/conformance"
	"github.com/modelrt/modelrt/runtime/plugin"
)

type conformanceFlags struct {
	cases    string
	backends []string
	run      string
	noChecks bool
	asJSON   bool
	quiet    bool
}

func newConformanceCmd(g *globals) *cobra.Command {
	f := &conformanceFlags{}
	cmd := &cobra.Command{
		Use:   "conformance --cases DIR [--backends native,onnxrt] [--json]",
		Short: "Run conformance case files on backend plugins and report one row per (case, backend)",
		Long: `Reads every *.json case file (format modelrt-case/v1) of --cases, starts each backend of
--backends as a plugin process (a name found in the plugin directories, or a path), and runs
every case on every backend that can load the case's model directory. A backend that cannot load
it reports the case as n/a with the reason; that is never a pass.

Each row compares the outputs with the case's expected values (max abs and rel error; logits and
VAE outputs within the case's tolerance, generated ids exactly) and adds checks that need no
expected values: kv-cache (one token at a time against one pass), batch (against one by one),
padding (left-padded rows against unpadded), reload, seed (fixed-seed sampling twice), and
cross:<backend> (two backends that load the same directory, against each other).

Exit status 1 when any row fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runConformance(cmd, g, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.cases, "cases", "", "directory of *.json case files")
	fl.StringSliceVar(&f.backends, "backends", []string{"native", "onnxrt"}, "backends to run: plugin names or paths, comma-separated")
	fl.StringVar(&f.run, "run", "", "only cases whose name matches this regular expression")
	fl.BoolVar(&f.noChecks, "no-checks", false, "compare with the expected values only (skip kv-cache, batch, padding, reload, seed)")
	fl.BoolVar(&f.asJSON, "json", false, "print the report as JSON")
	fl.BoolVar(&f.quiet, "quiet", false, "no progress lines on stderr")
	return cmd
}

// conformanceJSON is the --json output.
type conformanceJSON struct {
	Rows          []conformance.Row `json:"rows"`
	Passed        int               `json:"passed"`
	Failed        int               `json:"failed"`
	NotApplicable int               `json:"not_applicable"`
}

func runConformance(cmd *cobra.Command, g *globals, f *conformanceFlags) error {
	ctx := cmd.Context()
	if f.cases == "" {
		return fmt.Errorf("conformance needs --cases DIR")
	}
	cases, err := conformance.LoadDir(f.cases)
	if err != nil {
		return err
	}
	if f.run != "" {
		re, err := regexp.Compile(f.run)
		if err != nil {
			return fmt.Errorf("--run: %w", err)
		}
		var keep []*conformance.Case
		for _, c := range cases {
			if re.MatchString(c.Name) {
				keep = append(keep, c)
			}
		}
		if len(keep) == 0 {
			return fmt.Errorf("--run %q matches none of the %d cases in %s", f.run, len(cases), f.cases)
		}
		cases = keep
	}
	if len(f.backends) == 0 {
		return fmt.Errorf("--backends is empty")
	}
	dirs := plugin.SearchDirs(g.pluginDir)
	var specs []conformance.PluginSpec
	for _, ref := range f.backends {
		ref = strings.TrimSpace(ref)
		path, err := plugin.Resolve(ref, dirs)
		if err != nil {
			return err
		}
		specs = append(specs, conformance.PluginSpec{Name: strings.TrimPrefix(ref, plugin.Prefix), Path: path})
	}
	targets, stop, err := conformance.StartPlugins(ctx, specs, slog.Default(), g.logLevel)
	if err != nil {
		return err
	}
	defer stop()

	errOut := cmd.ErrOrStderr()
	total, done := len(cases)*len(targets), 0
	opts := conformance.Options{NoChecks: f.noChecks}
	if !f.quiet {
		opts.OnRow = func(r conformance.Row) {
			done++
			fmt.Fprintf(errOut, "[%d/%d] %s on %s: %s\n", done, total, r.Case, r.Backend, r.Result)
		}
	}
	rep := conformance.Run(ctx, cases, targets, opts)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("conformance interrupted: %w", err)
	}
	out := cmd.OutOrStdout()
	if f.asJSON {
		j := conformanceJSON{Rows: rep.Rows}
		for _, r := range rep.Rows {
			switch r.Result {
			case conformance.Pass:
				j.Passed++
			case conformance.Fail:
				j.Failed++
			case conformance.NotApplicable:
				j.NotApplicable++
			}
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(j); err != nil {
			return err
		}
	} else if err := conformance.WriteTable(out, rep); err != nil {
		return err
	}
	if rep.Failed() {
		return exitError{code: 1}
	}
	return nil
}
