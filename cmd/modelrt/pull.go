package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelrt/modelrt/cmd/modelrt/internal/hub"
)

type pullFlags struct {
	out, revision, endpoint string
	onnx                    bool
	sha256                  []string
}

func newPullCmd(g *globals) *cobra.Command {
	f := &pullFlags{}
	cmd := &cobra.Command{
		Use:   "pull NAME|URL [--out DIR] [--revision REV] [--endpoint URL] [--onnx] [--sha256 FILE=HEX]…",
		Short: "Download a model directory from a Hugging Face–style hub",
		Long: `Fetches a model directory — config.json, the safetensors weights (model.safetensors or
diffusion_pytorch_model.safetensors), the tokenizer files and generation configs, and with --onnx
the ONNX graphs — from {endpoint}/{NAME}/resolve/{revision}/{file}. NAME is a repository such as
gpt2 or openai-community/gpt2; a URL is used as the base of the files instead. The endpoint is
--endpoint, else $MODELRT_HUB_ENDPOINT, else https://huggingface.co; $HF_TOKEN is sent for gated
repositories.

Each file downloads into FILE.part, is resumed with HTTP Range requests when the connection
drops (also by a later run), is checked against the size and sha256 the hub announces for LFS
files (or the digest pinned with --sha256 FILE=HEX), and is renamed into place only when both
match. Files the hub does not have are skipped unless required (config.json, and at least one
weights file).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runPull(cmd, f, args[0]) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.out, "out", "", "directory to write (default: the repository's name in the current directory)")
	fl.StringVar(&f.revision, "revision", "main", "branch, tag or commit on the hub")
	fl.StringVar(&f.endpoint, "endpoint", "", "hub URL (default $"+hub.EnvEndpoint+", else "+hub.DefaultEndpoint+")")
	fl.BoolVar(&f.onnx, "onnx", false, "also fetch ONNX graphs (model.onnx, decoder_model_merged.onnx, vae_encoder/, vae_decoder/)")
	fl.StringArrayVar(&f.sha256, "sha256", nil, "pin a file's digest: FILE=HEX (repeatable)")
	return cmd
}

func runPull(cmd *cobra.Command, f *pullFlags, ref string) error {
	base, name, err := hub.Resolve(ref, hub.Endpoint(f.endpoint), f.revision)
	if err != nil {
		return err
	}
	pins := map[string]string{}
	for _, s := range f.sha256 {
		file, sum, err := hub.ParseSHA256Flag(s)
		if err != nil {
			return err
		}
		pins[file] = sum
	}
	out := f.out
	if out == "" {
		out = name
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	// No overall timeout (weights take minutes); a hub that stops answering is caught by the
	// header timeout, a stalled body by the retry loop when the connection drops.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = time.Minute
	c := &hub.Client{HTTP: &http.Client{Transport: tr}, Token: os.Getenv(hub.EnvToken), Progress: cmd.ErrOrStderr()}
	fmt.Fprintf(cmd.ErrOrStderr(), "pull: %s from %s into %s\n", ref, base, out)
	res, err := c.Pull(cmd.Context(), base, out, hub.Options{Files: hub.ModelFiles(f.onnx), SHA256: pins})
	if err != nil {
		return err
	}
	var total int64
	verified := 0
	for _, fe := range res.Fetched {
		total += fe.Size
		if fe.Verified {
			verified++
		}
	}
	abs, _ := filepath.Abs(out)
	fmt.Fprintf(cmd.OutOrStdout(), "%s: %d files, %.1f MiB (%d sha256-verified), %d optional files not on the hub\n",
		abs, len(res.Fetched), float64(total)/(1<<20), verified, len(res.Skipped))
	return nil
}
