package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/modelrt/modelrt/sdk/modeldir"
	"github.com/modelrt/modelrt/sdk/modeldir/quant"
)

func newQuantizeCmd() *cobra.Command {
	var src, out, dtype string
	cmd := &cobra.Command{
		Use:   "quantize --model DIR --out DIR [--dtype int8|fp16]",
		Short: "Write a GPT-2 model directory with int8 or fp16 weights for the native backend",
		Long: `Reads a float32 GPT-2 directory (config.json + model.safetensors) and writes OUT with its
weight matrices (Conv1D weights and the token embeddings / tied LM head) stored as symmetric
int8 with one float32 scale per output channel, or as float16. Biases, layer norms and position
embeddings stay float32. config.json gains a "quantization" entry, from which the native
backend detects the format; the tokenizer files are copied. The format is described in
docs/kernels.md. The onnxrt backend does not read these directories.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if src == "" || out == "" {
				return fmt.Errorf("quantize needs --model DIR and --out DIR")
			}
			dt, err := quant.ParseDType(dtype)
			if err != nil {
				return err
			}
			if dt == quant.F32 {
				return fmt.Errorf("quantize --dtype %q: want int8 or fp16", dtype)
			}
			if a, b := filepath.Clean(src), filepath.Clean(out); a == b {
				return fmt.Errorf("quantize: --out %s is the source directory; write elsewhere", out)
			}
			if err := modeldir.QuantizeGPT2(src, out, dt); err != nil {
				return err
			}
			if _, err := modeldir.LoadGPT2Config(filepath.Join(out, "config.json")); err != nil {
				return fmt.Errorf("quantize: reading back %s: %w", out, err)
			}
			st, err := os.Stat(filepath.Join(out, modeldir.GPT2WeightsFile))
			if err != nil {
				return fmt.Errorf("quantize: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%s weights, %.1f MB)\n", out, dt, float64(st.Size())/1e6)
			return nil
		},
	}
	cmd.Flags().StringVar(&src, "model", "", "float32 GPT-2 model directory (config.json + model.safetensors)")
	cmd.Flags().StringVar(&out, "out", "", "output directory")
	cmd.Flags().StringVar(&dtype, "dtype", "int8", "weight type: int8 or fp16")
	return cmd
}
