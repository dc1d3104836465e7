package pipelines

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/hcl/v2"

	"github.com/modelrt/modelrt/sdk"
)

// testSchemas is what the two first-party plugins report, as far as these
// tests need: enough to exercise typed, required and unknown attributes.
func testSchemas(plugin string) (*sdk.ConfigSchema, error) {
	switch plugin {
	case "modelrt-onnxrt":
		return &sdk.ConfigSchema{Attributes: []sdk.ConfigAttribute{
			{Name: "intra_op_threads", Type: "number"},
			{Name: "inter_op_threads", Type: "number"},
			{Name: "execution_providers", Type: "list(string)"},
		}}, nil
	case "modelrt-native":
		return &sdk.ConfigSchema{Attributes: []sdk.ConfigAttribute{{Name: "threads", Type: "number"}}}, nil
	}
	return nil, os.ErrNotExist
}

func render(t *testing.T, diags hcl.Diagnostics, files map[string]*hcl.File) string {
	t.Helper()
	var b bytes.Buffer
	if err := WriteDiagnostics(&b, diags, files); err != nil {
		t.Fatalf("WriteDiagnostics: %v", err)
	}
	return b.String()
}

func goodDirs(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob("../testdata/pipelines/good/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no good fixtures: %v", err)
	}
	return dirs
}

func TestGoodFixturesLoad(t *testing.T) {
	for _, dir := range goodDirs(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			cfg, diags := Load(dir, LoadOptions{BackendSchemas: testSchemas})
			if len(diags) > 0 {
				t.Fatalf("Load(%s): %d diagnostics:\n%s", dir, len(diags), render(t, diags, cfg.Files))
			}
			if len(cfg.Pipelines) == 0 {
				t.Fatalf("Load(%s): no pipelines", dir)
			}
		})
	}
}
