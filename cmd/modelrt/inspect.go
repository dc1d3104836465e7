package main

import (
	"github.com/spf13/cobra"

	"github.com/modelrt/modelrt/onnx"
)

func newInspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect FILE.onnx",
		Short: "Summarise an ONNX model: IR version, opsets, inputs and outputs, initializers, ops",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return onnx.Inspect(args[0], cmd.OutOrStdout())
		},
	}
}
