package plugintest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuild builds a real plugin from a test's working directory (not the module root) and runs
// it: started without the host's handshake, a go-plugin binary says it is a plugin and exits.
func TestBuild(t *testing.T) {
	dir := t.TempDir()
	if err := Build(dir, TestBackend); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, TestBackend.Name)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		t.Errorf("%s is not executable: %v", path, fi.Mode())
	}
	out, err := exec.Command(path).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "This binary is a plugin") {
		t.Errorf("running %s directly: err %v, output %q; want go-plugin's refusal", path, err, out)
	}
}

// TestBuildError: a package that does not build gives an error naming it, with go build's
// output, which shows the path was taken from the module root.
func TestBuildError(t *testing.T) {
	b := Binary{Name: "modelrt-missing", Pkg: "testdata/plugins/missing"}
	_, err := b.Build(t.TempDir())
	if err == nil {
		t.Fatal("built a package that does not exist")
	}
	if msg := err.Error(); !strings.Contains(msg, "go build testdata/plugins/missing (CGO_ENABLED=0)") || !strings.Contains(msg, filepath.Join(root(t), "testdata/plugins/missing")+": directory not found") {
		t.Errorf("error %q does not name the package", msg)
	}
}

func root(t *testing.T) string {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func TestModuleRoot(t *testing.T) {
	root := root(t)
	want, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if root != want {
		t.Errorf("module root %s, want %s", root, want)
	}
	dir, err := Native.Dir()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "main.go")); err != nil {
		t.Errorf("Native.Dir() = %s: %v", dir, err)
	}
}
