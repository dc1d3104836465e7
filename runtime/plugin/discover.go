package plugin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelrt/modelrt/sdk"
)

// EnvPluginDir names the environment variable with extra plugin directories (colon-separated).
const EnvPluginDir = "MODELRT_PLUGIN_DIR"

// Prefix is the file-name prefix of plugin executables: a backend "native" is "modelrt-native".
const Prefix = "modelrt-"

// SearchDirs returns the plugin directories in lookup order: flagDir (the --plugin-dir flag) when
// set, then $MODELRT_PLUGIN_DIR, then the directory of the running executable.
func SearchDirs(flagDir string) []string {
	var dirs []string
	for _, list := range []string{flagDir, os.Getenv(EnvPluginDir)} {
		for _, d := range filepath.SplitList(list) {
			if d != "" && !slices.Contains(dirs, d) {
				dirs = append(dirs, d)
			}
		}
	}
	if exe, err := os.Executable(); err == nil {
		if d := filepath.Dir(exe); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// Found is a plugin binary found on disk.
type Found struct {
	Name string // backend name: the file name without Prefix
	Path string
}

// Discover lists the files named modelrt-* in dirs. The first directory that has a name wins.
// Directories that do not exist are skipped.
func Discover(dirs []string) []Found {
	var out []Found
	seen := map[string]bool{}
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			name := e.Name()
			if !strings.HasPrefix(name, Prefix) || e.IsDir() || strings.HasSuffix(name, ".so") {
				continue
			}
			backend := strings.TrimPrefix(name, Prefix)
			if backend == "" || seen[backend] {
				continue
			}
			seen[backend] = true
			out = append(out, Found{Name: backend, Path: filepath.Join(d, name)})
		}
	}
	return out
}

// Resolve turns a plugin reference into an executable path: a path (anything with a slash) is
// taken as it is; a bare name "native" or "modelrt-native" is looked up in dirs.
func Resolve(ref string, dirs []string) (string, error) {
	if strings.ContainsRune(ref, filepath.Separator) {
		return ref, nil
	}
	name := strings.TrimPrefix(ref, Prefix)
	for _, f := range Discover(dirs) {
		if f.Name == name {
			return f.Path, nil
		}
	}
	return "", fmt.Errorf("%w %q: no %s%s in the plugin directories %v (set --plugin-dir or %s)", ErrStart, ref, Prefix, name, dirs, EnvPluginDir)
}

// Info is what probing a plugin found: its description, or why it could not be started.
type Info struct {
	Found
	Desc *sdk.DescribeResponse
	Err  error
}

// Probe starts every plugin (concurrently), asks it to describe itself and stops it. A plugin
// that cannot start is reported with its error; it does not stop the others.
func Probe(ctx context.Context, found []Found, base Config) []Info {
	out := make([]Info, len(found))
	var wg sync.WaitGroup
	for i, f := range found {
		wg.Go(func() {
			cfg := base
			cfg.Name, cfg.Path = f.Name, f.Path
			if cfg.StartTimeout == 0 {
				cfg.StartTimeout = 10 * time.Second
			}
			p, err := Start(ctx, cfg)
			out[i] = Info{Found: f, Err: err}
			if err == nil {
				out[i].Desc = p.Description()
				p.Close()
			}
		})
	}
	wg.Wait()
	return out
}
