package hub_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelrt/modelrt/cmd/modelrt/internal/hub"
	"github.com/modelrt/modelrt/cmd/modelrt/internal/hub/hubtest"
)

const fixture = "../../../../testdata/models/gpt2-tiny"

// fixtureFiles are the files of the fixture that ModelFiles names (reference.safetensors is not
// one of them and must not be fetched).
var fixtureFiles = []string{"config.json", "model.safetensors", "encoder.json", "vocab.bpe"}

func newClient(progress *bytes.Buffer) *hub.Client {
	c := &hub.Client{Backoff: 1}
	if progress != nil { // a nil *bytes.Buffer in the io.Writer would not be a nil Progress
		c.Progress = progress
	}
	return c
}

func sameFiles(t *testing.T, out string, names []string) {
	t.Helper()
	for _, n := range names {
		want, err := os.ReadFile(filepath.Join(fixture, n))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(out, n))
		if err != nil {
			t.Errorf("%s: %v", n, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes differ from the fixture's %d", n, len(got), len(want))
		}
	}
	entries, _ := filepath.Glob(filepath.Join(out, "*"))
	for _, e := range entries {
		if strings.HasSuffix(e, hub.PartSuffix) || filepath.Base(e) == "reference.safetensors" {
			t.Errorf("%s left in the output", e)
		}
	}
}

func pull(t *testing.T, s *hubtest.Server, out string, opts hub.Options) (*hub.Result, string, error) {
	t.Helper()
	base, _, err := hub.Resolve(s.Repo, s.Endpoint(), "main")
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	res, err := newClient(&progress).Pull(context.Background(), base, out, opts)
	return res, progress.String(), err
}

// TestPullResumesDroppedDownload: the server cuts model.safetensors halfway once; Pull resumes
// it with a Range request, checks the hub's sha256 and skips the tokenizer files it lacks.
func TestPullResumesDroppedDownload(t *testing.T) {
	s := hubtest.NewServer(fixture, "acme/gpt2-tiny")
	defer s.Close()
	s.DropOnce["model.safetensors"] = true
	out := t.TempDir()
	res, progress, err := pull(t, s, out, hub.Options{})
	if err != nil {
		t.Fatalf("pull: %v\n%s", err, progress)
	}
	sameFiles(t, out, fixtureFiles)
	var ranged []string
	for _, r := range s.Requests() {
		if r.Range != "" && strings.HasPrefix(r.Path, "/lfs/") { // the resolve URL's redirect keeps the header
			ranged = append(ranged, r.Path+" "+r.Range)
		}
	}
	if len(ranged) != 1 || !strings.Contains(ranged[0], "bytes=") || strings.Contains(ranged[0], "bytes=0-") {
		t.Errorf("range requests %q; want one to the LFS store resuming past byte 0", ranged)
	}
	byName := map[string]*hub.Fetched{}
	for _, f := range res.Fetched {
		byName[f.Name] = f
	}
	if f := byName["model.safetensors"]; f == nil || !f.Verified || !f.Resumed {
		t.Errorf("model.safetensors: %+v; want verified and resumed", f)
	}
	if !strings.Contains(strings.Join(res.Skipped, ","), "vocab.json") {
		t.Errorf("skipped %v; want vocab.json among them", res.Skipped)
	}
	if !strings.Contains(progress, "resuming") || !strings.Contains(progress, "sha256 verified") {
		t.Errorf("progress lacks resume or verification:\n%s", progress)
	}

	// A second pull finds everything it can verify in place.
	s.DropOnce = map[string]bool{}
	res, progress, err = pull(t, s, out, hub.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Fetched {
		if f.Name == "model.safetensors" && !f.UpToDate {
			t.Errorf("second pull downloaded model.safetensors again:\n%s", progress)
		}
	}
}

// TestPullRenamedRepository: the hub redirects an old repository name to the new one; the
// sha256 on the LFS redirect behind it must still be found and checked.
func TestPullRenamedRepository(t *testing.T) {
	s := hubtest.NewServer(fixture, "acme/gpt2-tiny")
	defer s.Close()
	s.Alias = "gpt2-tiny"
	base, dir, err := hub.Resolve("gpt2-tiny", s.Endpoint(), "main")
	if err != nil || dir != "gpt2-tiny" {
		t.Fatal(dir, err)
	}
	out := t.TempDir()
	res, err := newClient(nil).Pull(context.Background(), base, out, hub.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sameFiles(t, out, fixtureFiles)
	for _, f := range res.Fetched {
		if f.Name == "model.safetensors" && !f.Verified {
			t.Error("model.safetensors not verified through the rename redirect")
		}
	}
}

// TestPullResumesLeftoverPart: a .part from an interrupted run is continued, not restarted.
func TestPullResumesLeftoverPart(t *testing.T) {
	s := hubtest.NewServer(fixture, "acme/gpt2-tiny")
	defer s.Close()
	out := t.TempDir()
	data, err := os.ReadFile(filepath.Join(fixture, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	const have = 1000
	if err := os.WriteFile(filepath.Join(out, "model.safetensors"+hub.PartSuffix), data[:have], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, progress, err := pull(t, s, out, hub.Options{}); err != nil {
		t.Fatalf("pull: %v\n%s", err, progress)
	}
	sameFiles(t, out, fixtureFiles)
	found := false
	for _, r := range s.Requests() {
		found = found || r.Range == "bytes=1000-"
	}
	if !found {
		t.Errorf("no Range request from byte %d: %v", have, s.Requests())
	}
}

func TestPullRejectsWrongSHA256(t *testing.T) {
	for _, tc := range []struct {
		name    string
		badEtag bool
		pin     map[string]string
	}{
		{"pinned by flag", false, map[string]string{"model.safetensors": strings.Repeat("ab", 32)}},
		{"announced by the hub", true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := hubtest.NewServer(fixture, "acme/gpt2-tiny")
			defer s.Close()
			s.BadEtag["model.safetensors"] = tc.badEtag
			out := t.TempDir()
			_, progress, err := pull(t, s, out, hub.Options{SHA256: tc.pin})
			if !errors.Is(err, hub.ErrChecksum) || !strings.Contains(err.Error(), "model.safetensors") {
				t.Fatalf("err = %v; want ErrChecksum naming model.safetensors\n%s", err, progress)
			}
			for _, p := range []string{"model.safetensors", "model.safetensors" + hub.PartSuffix} {
				if _, err := os.Stat(filepath.Join(out, p)); err == nil {
					t.Errorf("%s kept after a checksum failure", p)
				}
			}
		})
	}
}

func TestPullMissingFiles(t *testing.T) {
	s := hubtest.NewServer(fixture, "acme/gpt2-tiny")
	defer s.Close()
	// A required file the hub lacks fails the pull, naming the file and URL.
	_, _, err := pull(t, s, t.TempDir(), hub.Options{Files: []hub.File{{Name: "config.json", Need: hub.Required}, {Name: "nope.json", Need: hub.Required}}})
	if !errors.Is(err, hub.ErrMissing) || !errors.Is(err, hub.ErrNotFound) || !strings.Contains(err.Error(), s.URL+"/acme/gpt2-tiny/resolve/main/nope.json") {
		t.Errorf("err = %v; want ErrMissing naming nope.json's URL", err)
	}
	// No weights at all.
	_, _, err = pull(t, s, t.TempDir(), hub.Options{Files: []hub.File{{Name: "config.json", Need: hub.Required}, {Name: "diffusion_pytorch_model.safetensors", Need: hub.OneOf}}})
	if !errors.Is(err, hub.ErrMissing) || !strings.Contains(err.Error(), "diffusion_pytorch_model.safetensors") {
		t.Errorf("err = %v; want ErrMissing listing the weights tried", err)
	}
	// A pin for a file outside the list is a usage error.
	if _, _, err = pull(t, s, t.TempDir(), hub.Options{SHA256: map[string]string{"other.bin": strings.Repeat("0", 64)}}); err == nil {
		t.Error("a --sha256 for a file not pulled was accepted")
	}
	// Another repository: 404 on config.json.
	base, _, _ := hub.Resolve("acme/other", s.Endpoint(), "main")
	_, err = newClient(nil).Pull(context.Background(), base, t.TempDir(), hub.Options{})
	if !errors.Is(err, hub.ErrNotFound) || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("err = %v; want not found for config.json", err)
	}
}

func TestResolve(t *testing.T) {
	for _, tc := range []struct{ ref, endpoint, rev, base, dir, err string }{
		{"gpt2", "https://huggingface.co", "main", "https://huggingface.co/gpt2/resolve/main/", "gpt2", ""},
		{"openai-community/gpt2", "https://hf-mirror.example/", "refs/pr/1", "https://hf-mirror.example/openai-community/gpt2/resolve/refs%2Fpr%2F1/", "gpt2", ""},
		{"http://127.0.0.1:8080/models/vae/?x=1", "", "", "http://127.0.0.1:8080/models/vae/", "vae", ""},
		{"https://example.com", "", "", "https://example.com/", "model", ""},
		{"a/b/c", "https://huggingface.co", "main", "", "", "repository name"},
		{"../etc", "https://huggingface.co", "main", "", "", "repository name"},
		{"gpt2", "ftp://x", "main", "", "", "endpoint"},
		{"gpt2", "https://huggingface.co", "", "", "", "revision"},
		{"file:///etc/passwd", "", "", "", "", "http(s) URL"},
	} {
		base, dir, err := hub.Resolve(tc.ref, tc.endpoint, tc.rev)
		if tc.err != "" {
			if !errors.Is(err, hub.ErrRef) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Resolve(%q, %q, %q) = %q, %v; want ErrRef with %q", tc.ref, tc.endpoint, tc.rev, base, err, tc.err)
			}
			continue
		}
		if err != nil || base != tc.base || dir != tc.dir {
			t.Errorf("Resolve(%q, %q, %q) = %q, %q, %v; want %q, %q", tc.ref, tc.endpoint, tc.rev, base, dir, err, tc.base, tc.dir)
		}
	}
}

func TestEndpoint(t *testing.T) {
	t.Setenv(hub.EnvEndpoint, "http://mirror.local")
	if got := hub.Endpoint(""); got != "http://mirror.local" {
		t.Errorf("Endpoint from env = %q", got)
	}
	if got := hub.Endpoint("http://flag"); got != "http://flag" {
		t.Errorf("flag did not win: %q", got)
	}
	t.Setenv(hub.EnvEndpoint, "")
	if got := hub.Endpoint(""); got != hub.DefaultEndpoint {
		t.Errorf("default = %q", got)
	}
}

func TestParseSHA256Flag(t *testing.T) {
	hexA := strings.Repeat("A", 64)
	if f, h, err := hub.ParseSHA256Flag("model.safetensors=" + hexA); err != nil || f != "model.safetensors" || h != strings.ToLower(hexA) {
		t.Errorf("got %q %q %v", f, h, err)
	}
	for _, bad := range []string{"model.safetensors", "=" + hexA, "x=abc", "x=" + strings.Repeat("g", 64)} {
		if _, _, err := hub.ParseSHA256Flag(bad); err == nil {
			t.Errorf("ParseSHA256Flag(%q) accepted", bad)
		}
	}
}

func TestParseContentRange(t *testing.T) {
	for _, tc := range []struct {
		in                string
		first, last, size int64
		ok                bool
	}{
		{"bytes 100-199/200", 100, 199, 200, true},
		{"bytes 0-0/*", 0, 0, -1, true},
		{"bytes 5-4/10", 0, 0, 0, false},
		{"bytes 0-9/9", 0, 0, 0, false},
		{"bytes */10", 0, 0, 0, false},
		{"items 0-1/2", 0, 0, 0, false},
	} {
		f, l, s, err := hub.ParseContentRange(tc.in)
		if (err == nil) != tc.ok || (tc.ok && (f != tc.first || l != tc.last || s != tc.size)) {
			t.Errorf("ParseContentRange(%q) = %d %d %d %v", tc.in, f, l, s, err)
		}
	}
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 100-199/200", "bytes 0-0/*", "bytes -1-2/3", "bytes 9223372036854775807-9223372036854775807/*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		first, last, size, err := hub.ParseContentRange(s)
		if err == nil && (first < 0 || last < first || (size != -1 && size <= last)) {
			t.Fatalf("ParseContentRange(%q) = %d %d %d without error", s, first, last, size)
		}
	})
}

func FuzzResolve(f *testing.F) {
	for _, s := range []string{"gpt2", "openai-community/gpt2", "http://h/x", "https://h", "a/../b", "x//y"} {
		f.Add(s, "main")
	}
	f.Fuzz(func(t *testing.T, ref, rev string) {
		base, dir, err := hub.Resolve(ref, hub.DefaultEndpoint, rev)
		if err != nil {
			return
		}
		if !strings.HasSuffix(base, "/") || dir == "" || strings.ContainsAny(dir, "/\\") || dir == ".." {
			t.Fatalf("Resolve(%q, %q) = %q, %q", ref, rev, base, dir)
		}
		if !strings.Contains(ref, "://") && !strings.HasPrefix(base, hub.DefaultEndpoint+"/") {
			t.Fatalf("Resolve(%q, %q) = %q left the endpoint", ref, rev, base)
		}
	})
}

// plainServer serves body at /f with a handler that can misbehave: ignore Range, fail the
// first n GETs with 503, or announce a size (HEAD) other than the body's.
func plainServer(t *testing.T, body []byte, ignoreRange bool, fail503 int, headSize int) (*httptest.Server, *[]string) {
	t.Helper()
	var mu sync.Mutex
	var log []string
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		log = append(log, r.Method+" "+r.Header.Get("Range"))
		fail := r.Method == http.MethodGet && fail503 > 0
		if fail {
			fail503--
		}
		mu.Unlock()
		switch {
		case r.Method == http.MethodHead:
			w.Header().Set("Content-Length", strconv.Itoa(headSize))
		case fail:
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case ignoreRange:
			w.Write(body)
		default:
			http.ServeContent(w, r, "f", time.Time{}, bytes.NewReader(body))
		}
	}))
	t.Cleanup(s.Close)
	return s, &log
}

func TestFetchServerIgnoringRangeRestarts(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 100)
	s, _ := plainServer(t, body, true, 0, len(body))
	dest := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(dest+hub.PartSuffix, []byte("XXXX"), 0o644); err != nil { // not a prefix
		t.Fatal(err)
	}
	var progress bytes.Buffer
	f, err := newClient(&progress).Fetch(context.Background(), "f", s.URL+"/f", dest, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, body) || f.Verified {
		t.Errorf("got %d bytes (verified %v); want the body, size-checked only", len(got), f.Verified)
	}
	if !strings.Contains(progress.String(), "ignored the range request") {
		t.Errorf("progress:\n%s", progress.String())
	}
}

func TestFetchRetries5xx(t *testing.T) {
	body := []byte("weights")
	s, log := plainServer(t, body, false, 2, len(body))
	dest := filepath.Join(t.TempDir(), "f")
	if _, err := newClient(nil).Fetch(context.Background(), "f", s.URL+"/f", dest, ""); err != nil {
		t.Fatalf("after two 503s: %v (requests %q)", err, *log)
	}
	s2, _ := plainServer(t, body, false, 100, len(body))
	c := newClient(nil)
	c.Retries = 2
	_, err := c.Fetch(context.Background(), "f", s2.URL+"/f", filepath.Join(t.TempDir(), "f"), "")
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("err = %v; want the 503 after the retries", err)
	}
}

func TestFetchSizeMismatch(t *testing.T) {
	body := []byte("short")
	s, _ := plainServer(t, body, false, 0, 100)
	dest := filepath.Join(t.TempDir(), "f")
	_, err := newClient(nil).Fetch(context.Background(), "f", s.URL+"/f", dest, "")
	if !errors.Is(err, hub.ErrSize) {
		t.Fatalf("err = %v; want ErrSize", err)
	}
	for _, p := range []string{dest, dest + hub.PartSuffix} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s kept after a size mismatch", p)
		}
	}
}
