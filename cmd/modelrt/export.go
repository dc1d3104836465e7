package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/modelrt/modelrt/onnx/export"
)

func newExportCmd() *cobra.Command {
	var src, out string
	opts := export.DefaultOptions()
	cmd := &cobra.Command{
		Use:   "export --model DIR --out DIR",
		Short: "Export a native model directory (safetensors) to ONNX with the same weights",
		Long: `For a GPT-2 directory (config.json + model.safetensors), writes OUT/model.onnx — with
--with-past in Optimum's cache convention (past_key_values.{i}.key|value → present.{i}.key|value) —
and copies config.json and the tokenizer files beside it (for a text-to-image prior also the
codebook and text2image.json, its "vae" re-based to name the same directory).

For a diffusers AutoencoderKL directory, writes Optimum's split: OUT/vae_encoder/model.onnx
(sample → latent_parameters) and OUT/vae_decoder/model.onnx (latent_sample → sample).

The onnxrt backend loads OUT as it is.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if src == "" || out == "" {
				return fmt.Errorf("export needs --model DIR and --out DIR")
			}
			// Progress lines are slog records at info level; show them unless asked for less.
			if !slog.Default().Enabled(cmd.Context(), slog.LevelInfo) && cmd.Flag("log-level").Changed == false {
				slog.SetDefault(slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelInfo})))
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
	cmd.Flags().StringVar(&out, "out", "", "output directory")
	cmd.Flags().IntVar(&opts.Opset, "opset", opts.Opset, "ONNX opset: 14 or 17")
	cmd.Flags().BoolVar(&opts.WithPast, "with-past", opts.WithPast, "add KV-cache inputs and outputs (Optimum convention)")
	cmd.Flags().BoolVar(&opts.ExternalData, "external-data", opts.ExternalData, "store weights in model.onnx_data")
	return cmd
}
