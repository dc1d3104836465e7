package export

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"

	"github.com/modelrt/modelrt/sdk"
)

// copyText2Image copies a text-to-image prior's text2image.json and codebook beside its export
// (docs/text2image.md), with "vae" re-based so that it still names the same directory from
// outDir. A directory without text2image.json is not a prior: nothing is done.
func copyText2Image(srcDir, outDir string) error {
	t, err := sdk.ReadText2Image(filepath.Join(srcDir, sdk.Text2ImageFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := copyIfExists(filepath.Join(srcDir, t.Codebook), filepath.Join(outDir, t.Codebook)); err != nil {
		return err
	}
	vae, err := filepath.Abs(filepath.Join(srcDir, t.VAE))
	if err != nil {
		return err
	}
	absOut, err := filepath.Abs(outDir)
	if err != nil {
		return err
	}
	if t.VAE, err = filepath.Rel(absOut, vae); err != nil {
		return fmt.Errorf("%s: vae: %w", sdk.Text2ImageFile, err)
	}
	if err := sdk.WriteText2Image(filepath.Join(outDir, sdk.Text2ImageFile), t); err != nil {
		return err
	}
	slog.Info("export: text-to-image prior", "codebook", t.Codebook, "vae", t.VAE,
		"note", "the onnxrt backend needs an ONNX VAE: pass --vae, or edit vae in text2image.json")
	return nil
}
