// Package plugintest builds the binaries that modelrt's tests run as real processes: the
// plugins (a backend is a process, so its tests talk to it over gRPC as the host does) and the
// CLI. A TestMain builds what its package needs once, into a temporary directory:
//
//	dir, err := os.MkdirTemp("", "modelrt-server-test")
//	...
//	if err := plugintest.Build(dir, plugintest.Native); err != nil {
//		fmt.Fprintln(os.Stderr, err)
//		os.Exit(1)
//	}
//
// It is internal: it knows this repository's layout (packages are named from the module root,
// whatever the test's working directory) and is no part of what a backend author imports. A
// backend outside the repository builds its own binary and hands the path to conformance, as
// examples/backends/ngram does.
package plugintest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Binary is one program to build.
type Binary struct {
	Name string // the file name of the binary, e.g. modelrt-native
	Pkg  string // the package's directory relative to the module root, e.g. plugins/native
	Cgo  bool   // build with CGO_ENABLED=1 (plugins/onnxrt); otherwise CGO_ENABLED=0
}

// The binaries the tests build.
var (
	CLI         = Binary{Name: "modelrt", Pkg: "cmd/modelrt"}
	Native      = Binary{Name: "modelrt-native", Pkg: "plugins/native"}
	ONNXRT      = Binary{Name: "modelrt-onnxrt", Pkg: "plugins/onnxrt", Cgo: true}
	TestBackend = Binary{Name: "modelrt-testbackend", Pkg: "testdata/plugins/testbackend"}
	// OtherVersion speaks another protocol major version (runtime/plugin's handshake tests).
	OtherVersion = Binary{Name: "modelrt-otherversion", Pkg: "testdata/plugins/otherversion"}
)

// Build builds each binary into dir and stops at the first that fails.
func Build(dir string, bins ...Binary) error {
	for _, b := range bins {
		if _, err := b.Build(dir); err != nil {
			return err
		}
	}
	return nil
}

// Build builds b into dir and returns the binary's path. The error names the package and
// carries go build's output.
func (b Binary) Build(dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	out, err := filepath.Abs(filepath.Join(dir, b.Name))
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-o", out, "./"+filepath.ToSlash(b.Pkg))
	cmd.Dir = root
	cgo := "CGO_ENABLED=0"
	if b.Cgo {
		cgo = "CGO_ENABLED=1"
	}
	cmd.Env = append(os.Environ(), cgo)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s (%s): %v\n%s", b.Pkg, cgo, err, strings.TrimSpace(string(msg)))
	}
	return out, nil
}

// Dir returns the package's directory (absolute).
func (b Binary) Dir() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, filepath.FromSlash(b.Pkg)), nil
}

// ModuleRoot returns the directory of the go.mod that encloses the working directory (a test
// runs in its package's directory).
func ModuleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("no go.mod in %s or a parent", wd)
		}
	}
}
