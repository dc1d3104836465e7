package plugintest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// OpenAINodeVersion is the official OpenAI Node client the tests install (npm), pinned.
const OpenAINodeVersion = "4.95.0"

// OpenAINode installs the official OpenAI Node client once per machine into the user's cache
// directory and returns the directory holding node_modules (run scripts there); it skips the
// test, saying why, when node or npm is absent or the registry cannot be reached.
func OpenAINode(t testing.TB) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not on PATH: the OpenAI Node client cannot run (%v)", tool, err)
		}
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "modelrt-test", "openai-node-"+OpenAINodeVersion)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "openai", "package.json")); err == nil {
		return dir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", dir, "openai@"+OpenAINodeVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("npm install openai@%s failed (no registry?): %v\n%s", OpenAINodeVersion, err, out)
	}
	return dir
}

// RunNode writes script as name into dir (OpenAINode's, so that require finds the client),
// runs it with node and the extra environment (KEY=value), and returns its stdout; a failure
// fails the test with node's stderr and what more describes (a server's log).
func RunNode(t testing.TB, dir, name, script string, more func() string, env ...string) []byte {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), nodeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", path)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		extra := ""
		if more != nil {
			extra = more()
		}
		t.Fatalf("node %s: %v\n%s\n%s", name, err, stderr.String(), extra)
	}
	return out
}

// nodeTimeout bounds one script (its requests run on tiny models).
const nodeTimeout = 3 * time.Minute
