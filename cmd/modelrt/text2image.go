package main

import (
	"encoding/json"
	"fmt"
	"image"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelrt/modelrt/runtime/imageio"
	"github.com/modelrt/modelrt/runtime/text2image"
)

type text2imageFlags struct {
	model, vae, backend, prompt, size, out, grid string
	opts                                         text2image.Options
	asJSON                                       bool
}

func newText2ImageCmd(g *globals) *cobra.Command {
	f := &text2imageFlags{opts: text2image.DefaultOptions()}
	cmd := &cobra.Command{
		Use:   "text2image --model DIR --prompt TEXT --out PREFIX",
		Short: "Draw images from a caption with a GPT-2 prior over VAE codebook codes",
		Long: `Loads a text-to-image prior directory (a GPT-2 with text2image.json and a codebook,
docs/text2image.md) and its VAE in one backend plugin. The caption is normalised and tokenized
here; the prior samples the codes of each image on the host (classifier-free guidance runs the
null caption in the same batch); the codes' codebook vectors make the latent the VAE decodes.
Writes PREFIX-0.png … PREFIX-(N-1).png, at the native size unless --size asks for a
nearest-neighbour multiple. The VAE is text2image.json's "vae" unless --vae overrides it (an
ONNX export for --backend onnxrt, for instance). Image r uses seed S+r.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runText2Image(cmd, g, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.model, "model", "", "text-to-image prior directory")
	fl.StringVar(&f.vae, "vae", "", "VAE directory (default: text2image.json's \"vae\")")
	fl.StringVar(&f.backend, "backend", "native", "backend plugin: native, onnxrt, or a plugin path")
	fl.StringVar(&f.prompt, "prompt", "", "caption, e.g. \"the capital letter R, bold serif\"")
	fl.IntVar(&f.opts.N, "n", f.opts.N, fmt.Sprintf("images to draw (1–%d)", text2image.MaxImages))
	fl.Uint64Var(&f.opts.Seed, "seed", f.opts.Seed, "seed of image 0 (image r uses seed+r)")
	fl.Float64Var(&f.opts.Temperature, "temperature", f.opts.Temperature, "sampling temperature; 0 = greedy")
	fl.IntVar(&f.opts.TopK, "top-k", f.opts.TopK, "keep the k most likely codes (0 = all)")
	fl.Float64Var(&f.opts.Guidance, "guidance", f.opts.Guidance, "classifier-free guidance scale (1 = off)")
	fl.StringVar(&f.size, "size", "", "output size PX or WxH: native, or a whole multiple of it (nearest neighbour)")
	fl.StringVarP(&f.out, "out", "o", "", "output prefix: writes PREFIX-0.png, PREFIX-1.png, …")
	fl.StringVar(&f.grid, "grid", "", "also write all images as one grid PNG")
	fl.BoolVar(&f.asJSON, "json", false, "print one JSON object: images, codes, prompt_tokens, ms")
	return cmd
}

// text2imageJSON is the --json output.
type text2imageJSON struct {
	Images       []string `json:"images"`
	Codes        [][]int  `json:"codes"`
	PromptTokens int      `json:"prompt_tokens"`
	MS           float64  `json:"ms"`
}

// parsePixels reads --size: PX (square) or WxH.
func parsePixels(s string) (w, h int, err error) {
	if !strings.ContainsAny(s, "xX") {
		px, err := strconv.Atoi(s)
		if err != nil || px <= 0 {
			return 0, 0, fmt.Errorf("--size %q: want PX or WxH, e.g. 64 or 64x64", s)
		}
		return px, px, nil
	}
	return parseSize(s)
}

func runText2Image(cmd *cobra.Command, g *globals, f *text2imageFlags) error {
	ctx := cmd.Context()
	start := time.Now()
	if f.model == "" || f.out == "" {
		return fmt.Errorf("text2image needs --model DIR, --prompt TEXT and --out PREFIX")
	}
	m, err := text2image.Load(f.model, f.vae)
	if err != nil {
		return err
	}
	// Everything the request can get wrong is refused before a plugin starts.
	if _, _, _, err := m.Prompt(f.prompt); err != nil {
		return err
	}
	if f.size != "" {
		w, h, err := parsePixels(f.size)
		if err != nil {
			return err
		}
		if f.opts.Scale, err = m.ScaleFor(w, h); err != nil {
			return err
		}
	}
	if err := f.opts.Validate(); err != nil {
		return err
	}
	p, err := startBackend(ctx, g, f.backend)
	if err != nil {
		return err
	}
	defer p.Close()
	pipe, err := text2image.Open(ctx, p, m, "prior", "vae")
	if err != nil {
		return fmt.Errorf("%s: %w", p.Name(), err)
	}
	res, err := pipe.Generate(ctx, f.prompt, f.opts)
	if err != nil {
		return err
	}
	slog.Info("text2image: drawn", "caption", res.Caption, "images", len(res.Images), "prior_ms", res.PriorMS, "decode_ms", res.DecodeMS)
	paths := make([]string, len(res.Images))
	for i, img := range res.Images {
		paths[i] = fmt.Sprintf("%s-%d.png", f.out, i)
		if err := imageio.SavePNG(paths[i], img); err != nil {
			return err
		}
	}
	if f.grid != "" {
		cols := 1
		for cols*cols < len(res.Images) {
			cols++
		}
		grid, err := imageio.Grid(append([]image.Image(nil), res.Images...), cols)
		if err != nil {
			return err
		}
		if err := imageio.SavePNG(f.grid, grid); err != nil {
			return err
		}
	}
	out := cmd.OutOrStdout()
	if f.asJSON {
		return json.NewEncoder(out).Encode(text2imageJSON{Images: paths, Codes: res.Codes, PromptTokens: res.PromptTokens,
			MS: float64(time.Since(start).Microseconds()) / 1e3})
	}
	for _, path := range paths {
		fmt.Fprintln(out, path)
	}
	if f.grid != "" {
		fmt.Fprintln(out, f.grid)
	}
	return nil
}
