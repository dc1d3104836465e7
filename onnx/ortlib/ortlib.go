// Package ortlib finds the ONNX Runtime shared library on disk.
//
// It is pure Go (no cgo) so that the CLI can report where the library is, or why it is missing,
// without linking ONNX Runtime itself; only the onnxrt plugin loads the library it names.
//
// Lookup order (docs/onnxruntime.md):
//  1. $ONNXRUNTIME_SHARED_LIBRARY_PATH, when set (it must then exist: a wrong path is an error,
//     not a silent fallback);
//  2. libonnxruntime.so.1 beside the running executable;
//  3. .deps/onnxruntime/libonnxruntime.so.1 in the working directory or any of its parents (where
//     scripts/install-onnxruntime.sh puts it in a checkout);
//  4. /usr/local/lib/libonnxruntime.so.1 and /usr/lib/libonnxruntime.so.1.
package ortlib

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// EnvVar names the environment variable that overrides the lookup.
const EnvVar = "ONNXRUNTIME_SHARED_LIBRARY_PATH"

// LibName is the file name of the pinned ONNX Runtime CPU library.
const LibName = "libonnxruntime.so.1"

// InstallCommand is the one command that installs the pinned library into a checkout.
const InstallCommand = "scripts/install-onnxruntime.sh"

// ErrNotFound reports that no ONNX Runtime library was found.
var ErrNotFound = errors.New("ortlib: ONNX Runtime library not found")

// Find returns the path of the ONNX Runtime shared library, or an error that lists every place it
// looked and the command that installs it.
func Find() (string, error) {
	if p := os.Getenv(EnvVar); p != "" {
		st, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("%w: %s=%s: %v (install it with %s, or unset %s)", ErrNotFound, EnvVar, p, err, InstallCommand, EnvVar)
		}
		if st.IsDir() {
			return "", fmt.Errorf("%w: %s=%s is a directory, want the path of %s", ErrNotFound, EnvVar, p, LibName)
		}
		return p, nil
	}
	cands := Candidates()
	for _, c := range cands {
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return c, nil
		}
	}
	return "", fmt.Errorf("%w: %s is unset and none of these exist:\n  %s\ninstall the pinned library with %s (from the repository root), or set %s",
		ErrNotFound, EnvVar, strings.Join(cands, "\n  "), InstallCommand, EnvVar)
}

// Candidates lists the default locations, in lookup order, used when EnvVar is unset.
func Candidates() []string {
	var out []string
	if exe, err := os.Executable(); err == nil {
		out = append(out, filepath.Join(filepath.Dir(exe), LibName))
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; {
			out = append(out, filepath.Join(d, ".deps", "onnxruntime", LibName))
			parent := filepath.Dir(d)
			if parent == d {
				break
			}
			d = parent
		}
	}
	return append(out, "/usr/local/lib/"+LibName, "/usr/lib/"+LibName)
}
