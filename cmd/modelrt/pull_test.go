package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/cmd/modelrt/internal/hub"
	"github.com/modelrt/modelrt/cmd/modelrt/internal/hub/hubtest"
)

const pullFixture = "../../testdata/models/gpt2-tiny"

// pullCLI runs the real modelrt binary with extra environment variables.
func pullCLI(t *testing.T, env []string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "modelrt"), args...)
	cmd.Env = append(append(os.Environ(), "MODELRT_PLUGIN_DIR="+binDir, hub.EnvEndpoint+"="), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func sameAsFixture(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		want, err := os.ReadFile(filepath.Join(pullFixture, n))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(filepath.Join(dir, n)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, %v; want the fixture's %d bytes", n, len(got), err, len(want))
		}
	}
}

// TestPullThenGenerate pulls the fixture from a fake hub that drops the weights download once,
// then generates with the pulled directory through the native plugin.
func TestPullThenGenerate(t *testing.T) {
	s := hubtest.NewServer(pullFixture, "acme/gpt2-tiny")
	defer s.Close()
	s.DropOnce["model.safetensors"] = true
	out := filepath.Join(t.TempDir(), "gpt2-tiny")
	stdout, stderr, err := pullCLI(t, nil, "pull", "acme/gpt2-tiny", "--endpoint", s.Endpoint(), "--out", out)
	if err != nil {
		t.Fatalf("pull: %v\n%s", err, stderr)
	}
	sameAsFixture(t, out, "config.json", "model.safetensors", "encoder.json", "vocab.bpe")
	for _, want := range []string{"resuming at", "sha256 verified", "vocab.json: skipped"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if !strings.Contains(stdout, "4 files") || !strings.Contains(stdout, "1 sha256-verified") {
		t.Errorf("summary = %q", stdout)
	}
	gen, stderr, err := pullCLI(t, nil, "generate", "--model", out, "--prompt", "Hello", "--temperature", "0", "--max-new-tokens", "3", "--json")
	if err != nil || !strings.Contains(gen, `"generated_tokens":3`) {
		t.Errorf("generate on the pulled model: %v\n%s\n%s", err, gen, stderr)
	}
}

// TestPullEndpointFromEnvAndURL: $MODELRT_HUB_ENDPOINT replaces the default hub, and a URL
// argument is used as the files' base as it is.
func TestPullEndpointFromEnvAndURL(t *testing.T) {
	s := hubtest.NewServer(pullFixture, "acme/gpt2-tiny")
	defer s.Close()
	dir := t.TempDir()
	if _, stderr, err := pullCLI(t, []string{hub.EnvEndpoint + "=" + s.Endpoint()}, "pull", "acme/gpt2-tiny", "--out", filepath.Join(dir, "a")); err != nil {
		t.Fatalf("pull with $%s: %v\n%s", hub.EnvEndpoint, err, stderr)
	}
	sameAsFixture(t, filepath.Join(dir, "a"), "config.json", "model.safetensors")
	url := s.URL + "/acme/gpt2-tiny/resolve/main"
	cmd := exec.Command(filepath.Join(binDir, "modelrt"), "pull", url)
	cmd.Dir = dir // default --out: the URL's last segment
	cmd.Env = os.Environ()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pull %s: %v\n%s", url, err, b)
	}
	sameAsFixture(t, filepath.Join(dir, "main"), "config.json", "model.safetensors", "vocab.bpe")
}

func TestPullErrors(t *testing.T) {
	s := hubtest.NewServer(pullFixture, "acme/gpt2-tiny")
	defer s.Close()
	out := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"wrong sha256", []string{"acme/gpt2-tiny", "--sha256", "model.safetensors=" + strings.Repeat("0", 64)},
			[]string{"model.safetensors", "sha256 mismatch", "want " + strings.Repeat("0", 64)}},
		{"no such repository", []string{"acme/nothing"},
			[]string{"config.json", "no such file", s.URL + "/acme/nothing/resolve/main/config.json"}},
		{"bad name", []string{"a/b/c"}, []string{"repository name"}},
		{"bad pin", []string{"acme/gpt2-tiny", "--sha256", "model.safetensors=xyz"}, []string{"FILE=64 hex"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"pull", "--endpoint", s.Endpoint(), "--out", out}, tc.args...)
			_, stderr, err := pullCLI(t, nil, args...)
			if err == nil {
				t.Fatalf("pull %v succeeded", tc.args)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
	if _, err := os.Stat(filepath.Join(out, "model.safetensors")); err == nil {
		t.Error("model.safetensors written despite its wrong sha256")
	}
}
