package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/modelrt/modelrt/onnx/export"
	"github.com/modelrt/modelrt/sdk/gguf"
)

func newExportCmd() *cobra.Command {
	var src, out, format, ggufType string
	opts := export.DefaultOptions()
	cmd := &cobra.Command{
		Use:   "export --model DIR --out DIR|FILE.gguf [--format onnx|gguf]",
		Short: "Export a native model directory (safetensors) to ONNX or GGUF with the same weights",
		Long: `For a GPT-2 directory (config.json + model.safetensors), writes OUT/model.onnx — with
--with-past in Optimum's cache convention (past_key_values.{i}.key|value → present.{i}.key|value) —
and copies config.json and the tokenizer files beside it (for a text-to-image prior also the
codebook and text2image.json, its "vae" re-based to name the same directory).

For a diffusers AutoencoderKL directory, writes Optimum's split: OUT/vae_encoder/model.onnx
(sample → latent_parameters) and OUT/vae_decoder/model.onnx (latent_sample → sample).

The onnxrt backend loads OUT as it is.

--format gguf writes a GPT-2 directory as one GGUF file OUT (llama.cpp's "gpt2" architecture, so
llama.cpp and Ollama load it): --type f32, f16 or q8_0 (blocks of 32 int8 with an fp16 scale)
for the weight matrices; biases, norms and position embeddings stay f32. The tokenizer files
(vocab.json + merges.txt or encoder.json + vocab.bpe) become the GGUF's gpt2 BPE vocabulary.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if src == "" || out == "" {
				return fmt.Errorf("export needs --model DIR and --out DIR")
			}
			// Progress lines are slog records at info level; show them unless asked for less.
			if !slog.Default().Enabled(cmd.Context(), slog.LevelInfo) && cmd.Flag("log-level").Changed == false {
				slog.SetDefault(slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelInfo})))
			}
			switch format {
			case "onnx":
			case "gguf":
				ft, err := gguf.ParseFileType(ggufType)
				if err != nil {
					return err
				}
				if err := gguf.WriteGPT2(src, out, ft, gguf.GPT2Options{}); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (GGUF, gpt2, %s)\n", out, ggufType)
				return nil
			default:
				return fmt.Errorf("--format %q: want onnx or gguf", format)
			}
			if export.IsVAEDir(src) {
				if err := export.ExportVAE(src, out, opts); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s/vae_encoder/model.onnx and %s/vae_decoder/model.onnx (opset %d)\n", out, out, opts.Opset)
				return nil
			}
			if err := export.ExportGPT2(src, out, opts); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s/model.onnx (opset %d, with past: %v)\n", out, opts.Opset, opts.WithPast)
			return nil
		},
	}
	cmd.Flags().StringVar(&src, "model", "", "native model directory (config.json + model.safetensors)")
	cmd.Flags().StringVar(&out, "out", "", "output directory (onnx) or file (gguf)")
	cmd.Flags().StringVar(&format, "format", "onnx", "onnx (a directory) or gguf (one file, GPT-2 only)")
	cmd.Flags().StringVar(&ggufType, "type", "f32", "with --format gguf: weight type f32, f16 or q8_0")
	cmd.Flags().IntVar(&opts.Opset, "opset", opts.Opset, "ONNX opset: 14 or 17")
	cmd.Flags().BoolVar(&opts.WithPast, "with-past", opts.WithPast, "add KV-cache inputs and outputs (Optimum convention)")
	cmd.Flags().BoolVar(&opts.ExternalData, "external-data", opts.ExternalData, "store weights in model.onnx_data")
	return cmd
}
