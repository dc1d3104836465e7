package server

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUIServing: the page is there only with UI, behind the token (bearer or Basic); its
// same-origin requests pass the origin check, other origins still do not.
func TestUIServing(t *testing.T) {
	_, off := newTestServer(t, Options{})
	if st, _, _ := call(t, off.Client(), "GET", off.URL+"/", nil); st != http.StatusNotFound {
		t.Errorf("GET / without UI: %d, want 404", st)
	}
	_, ts := newImagesServer(t, Options{AuthToken: "s3cret", UI: true})
	c := ts.Client()
	st, h, _ := call(t, c, "GET", ts.URL+"/", nil)
	if st != http.StatusUnauthorized || !strings.Contains(strings.Join(h.Values("WWW-Authenticate"), ";"), "Basic") {
		t.Errorf("GET / without credentials: %d %v, want 401 asking for Basic", st, h)
	}
	req, _ := http.NewRequest("GET", ts.URL+"/", nil)
	req.SetBasicAuth("me", "s3cret")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Errorf("GET / with Basic: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	st, _, body := call(t, c, "GET", ts.URL+"/ui/models", nil, "Authorization", "Bearer s3cret")
	var models struct{ Completions, Images []string }
	if err := json.Unmarshal(body, &models); err != nil || st != 200 || strings.Join(models.Images, ",") != "prior" || strings.Join(models.Completions, ",") != "gpt2" {
		t.Errorf("GET /ui/models: %d %s", st, body)
	}
	same := map[string]any{"model": "gpt2", "prompt": "Hi", "max_tokens": 2}
	if st, _, body := call(t, c, "POST", ts.URL+"/v1/completions", same, "Authorization", "Bearer s3cret", "Origin", ts.URL); st != 200 {
		t.Errorf("same-origin POST: %d %s", st, body)
	}
	if st, _, _ := call(t, c, "POST", ts.URL+"/v1/completions", same, "Authorization", "Bearer s3cret", "Origin", "http://evil.example"); st != http.StatusForbidden {
		t.Errorf("cross-origin POST: %d, want 403", st)
	}
}

// puppeteerCore drives the system Chromium (it downloads no browser); pinned.
const puppeteerCore = "puppeteer-core@23.11.1"

// nodeUIScript opens the page with the token as Basic credentials, types a prompt, watches the
// text arrive in pieces, draws an image from a caption and saves a screenshot.
const nodeUIScript = `
const puppeteer = require("puppeteer-core");
(async () => {
  const browser = await puppeteer.launch({ executablePath: process.env.CHROMIUM, headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
  const page = await browser.newPage();
  await page.setViewport({ width: 1000, height: 900 });
  await page.authenticate({ username: "me", password: "s3cret" });
  const out = { console: [] };
  page.on("console", (m) => out.console.push(m.text()));
  page.on("pageerror", (e) => out.console.push("pageerror: " + e.message));
  await page.goto(process.env.URL, { waitUntil: "networkidle0" });
  await page.waitForFunction(() => document.querySelector("#model").options.length > 0);
  out.models = await page.$$eval("#model option", (os) => os.map((o) => o.value));
  await page.evaluate(() => {
    window.updates = 0;
    new MutationObserver(() => window.updates++).observe(document.querySelector("#output"), { childList: true, characterData: true, subtree: true });
  });
  await page.$eval("#max_tokens", (e) => (e.value = "16"));
  await page.$eval("#seed", (e) => (e.value = "3"));
  await page.type("#prompt", "The quick brown fox");
  await page.click("#generate");
  await page.waitForFunction(() => document.querySelector("#status").textContent !== "" &&
    !document.querySelector("#generate").disabled && window.updates > 0, { timeout: 60000 });
  out.text = await page.$eval("#output", (e) => e.textContent);
  out.updates = await page.evaluate(() => window.updates);
  out.status = await page.$eval("#status", (e) => e.textContent);
  out.imagesShown = await page.$eval("#imagesection", (e) => !e.hidden);
  await page.$eval("#size", (e) => (e.value = "32x32"));
  await page.$eval("#iseed", (e) => (e.value = "11"));
  await page.type("#caption", "the digit 7, mono");
  await page.click("#draw");
  await page.waitForFunction(() => { const i = document.querySelector("#images img"); return i && i.complete && i.naturalWidth > 0; }, { timeout: 60000 });
  out.image = await page.$eval("#images img", (i) => ({ w: i.naturalWidth, h: i.naturalHeight }));
  await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
  console.log(JSON.stringify(out));
  await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });
`

// TestUIChromium drives the playground in headless Chromium: a streamed completion and an
// image, then a screenshot (kept in $MODELRT_UI_SCREENSHOT when set, else the test's temp
// directory). It skips, saying why, when Chromium, node or npm is missing.
func TestUIChromium(t *testing.T) {
	chromium := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			chromium = p
			break
		}
	}
	if chromium == "" {
		t.Skip("no Chromium on PATH (apt-get install chromium; scripts/setup.sh installs it): the playground cannot be driven")
	}
	dir := npmPackages(t, "puppeteer-core", puppeteerCore)
	_, ts := newImagesServer(t, Options{AuthToken: "s3cret", UI: true})
	shot := os.Getenv("MODELRT_UI_SCREENSHOT")
	if shot == "" {
		shot = filepath.Join(t.TempDir(), "playground.png")
	}
	out := runNode(t, nodeUIScript, "URL="+ts.URL+"/", "CHROMIUM="+chromium, "SCREENSHOT="+shot,
		"NODE_PATH="+filepath.Join(dir, "node_modules"))
	t.Logf("browser: %s", out)
	var got struct {
		Models  []string
		Text    string
		Updates int
		Status  string
		Console []string
		Image   struct{ W, H int }
		Images  bool `json:"imagesShown"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if strings.Join(got.Models, ",") != "gpt2" || !got.Images {
		t.Errorf("models listed: %v, images section shown: %v", got.Models, got.Images)
	}
	// 16 tokens arrive as several events: the text is written more than once.
	if got.Text == "" || got.Updates < 2 || got.Status != "done" {
		t.Errorf("completion: text %q in %d updates, status %q; console %v", got.Text, got.Updates, got.Status, got.Console)
	}
	if got.Image.W != 32 || got.Image.H != 32 {
		t.Errorf("image %dx%d, want 32x32", got.Image.W, got.Image.H)
	}
	if fi, err := os.Stat(shot); err != nil || fi.Size() == 0 {
		t.Errorf("screenshot %s: %v", shot, err)
	}
	t.Logf("screenshot: %s", shot)
}
