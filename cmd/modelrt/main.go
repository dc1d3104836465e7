// Command modelrt runs generative models (GPT-2-class text models, diffusers VAEs) through
// backend plugins: `modelrt generate`, `modelrt run` of HCL pipelines, `modelrt serve`, and the
// tools around them (plugins, inspect, export, conformance, bench).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// globals are the flags every verb shares.
type globals struct {
	logLevel  string
	pluginDir string
}

// exitError carries an exit status without printing anything more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "modelrt:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "modelrt",
		Short:         "Serve GPT-2 and VAE models through backend plugins, wired by HCL pipelines",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			var lv slog.Level
			if err := lv.UnmarshalText([]byte(g.logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", g.logLevel)
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv})))
			return nil
		},
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&g.pluginDir, "plugin-dir", "", "directories with modelrt-* plugin binaries (colon-separated; also $MODELRT_PLUGIN_DIR, then beside modelrt)")
	root.AddCommand(
		newVersionCmd(),
		newPluginsCmd(g),
		newGenerateCmd(g),
		newInspectCmd(),
		newExportCmd(),
		newVAECmd(g),
		newText2ImageCmd(g),
		newRunCmd(g),
		newValidateCmd(g),
		newConformanceCmd(g),
		newServeCmd(g),
		newQuantizeCmd(),
		newBenchCmd(g),
		newPullCmd(g),
	)
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print modelrt's version and plugin protocol version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "modelrt %s (plugin protocol v%d)\n", version, protocolVersion)
			return nil
		},
	}
}
