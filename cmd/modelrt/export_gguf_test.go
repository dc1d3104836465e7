package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/sdk/gguf"
)

// TestExportGGUF runs `modelrt export --format gguf` on the tiny GPT-2 and reads the file back;
// sdk/gguf's tests check the contents tensor by tensor.
func TestExportGGUF(t *testing.T) {
	out := filepath.Join(t.TempDir(), "tiny.gguf")
	stdout, stderr, err := modelrt(t, "export", "--format", "gguf", "--type", "q8_0", "--model", "../../testdata/models/gpt2-tiny", "--out", out)
	if err != nil {
		t.Fatalf("export: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "wrote "+out) {
		t.Errorf("stdout %q does not name %s", stdout, out)
	}
	f, err := gguf.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := f.Get("general.file_type"); v != uint32(gguf.FileMostlyQ80) {
		t.Errorf("general.file_type = %v, want %d", v, gguf.FileMostlyQ80)
	}
	if _, stderr, err := modelrt(t, "export", "--format", "gguf", "--type", "q4_0", "--model", "x", "--out", out); err == nil || !strings.Contains(stderr, "q4_0") {
		t.Errorf("--type q4_0: err %v, stderr %q", err, stderr)
	}
	if _, stderr, err := modelrt(t, "export", "--format", "tflite", "--model", "x", "--out", out); err == nil || !strings.Contains(stderr, "tflite") {
		t.Errorf("--format tflite: err %v, stderr %q", err, stderr)
	}
}
