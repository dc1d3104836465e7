package server

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// openaiNodeVersion is the official OpenAI Node client the test installs (npm), pinned.
const openaiNodeVersion = "4.95.0"

// nodeImagesScript calls images.generate as an application would, then asks for a URL and
// reports the error class the client raises.
const nodeImagesScript = `
const OpenAI = require("openai");
const client = new OpenAI({ baseURL: process.env.BASE_URL + "/v1", apiKey: "s3cret", maxRetries: 0 });
(async () => {
  const res = await client.images.generate({
    model: "prior", prompt: "the digit 7, mono", n: 2, size: "32x32", response_format: "b64_json",
    seed: 11, guidance_scale: 2,
  });
  let urlError = null;
  try {
    await client.images.generate({ model: "prior", prompt: "the digit 7", response_format: "url" });
  } catch (e) {
    urlError = { name: e.constructor.name, status: e.status, message: e.message };
  }
  console.log(JSON.stringify({ res, urlError }));
})().catch((e) => { console.error(e); process.exit(1); });
`

// openaiNode installs the client once per machine into the user's cache directory and
// returns the directory holding node_modules; it skips when node or npm is absent.
func openaiNode(t *testing.T) string {
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
	dir := filepath.Join(cache, "modelrt-test", "openai-node-"+openaiNodeVersion)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "openai", "package.json")); err == nil {
		return dir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", dir, "openai@"+openaiNodeVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("npm install openai@%s failed (no registry?): %v\n%s", openaiNodeVersion, err, out)
	}
	return dir
}

// TestImagesOpenAINodeClient: the official OpenAI Node client's images.generate works against
// the daemon unchanged, and a URL request fails with its BadRequestError.
func TestImagesOpenAINodeClient(t *testing.T) {
	dir := openaiNode(t)
	_, ts := newImagesServer(t, Options{AuthToken: "s3cret"})
	script := filepath.Join(dir, "images.js")
	if err := os.WriteFile(script, []byte(nodeImagesScript), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "BASE_URL="+ts.URL)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	var got struct {
		Res      imagesReply
		URLError *struct {
			Name    string
			Status  int
			Message string
		}
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("parse %q: %v", out, err)
	}
	imgs := decodePNGs(t, got.Res)
	if len(imgs) != 2 || imgs[0].Bounds().Dx() != 32 || got.Res.Data[0].RevisedPrompt != "the digit 7, mono" {
		t.Errorf("images.generate: %d images, %v, revised %q", len(imgs), imgs[0].Bounds(), got.Res.Data[0].RevisedPrompt)
	}
	if e := got.URLError; e == nil || e.Name != "BadRequestError" || e.Status != 400 || !strings.Contains(e.Message, "no image files to link to") {
		t.Errorf("response_format url: %+v", e)
	}
}
