package server

import (
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"net/http"
	"net/url"
	"os"
	"path/filepath"

	"github.com/modelrt/modelrt/pipelines"
	"github.com/modelrt/modelrt/sdk"
)

// The playground (Options.UI, `serve --ui`): one static page at GET / that lists the models,
// streams completions and draws images through the public API, same-origin and in JSON. It
// has no build step and loads nothing from elsewhere.
//
// Auth: a browser cannot add a bearer header to a navigation, so when a token is set the
// server also takes HTTP Basic credentials whose password is the token (any user name), and
// asks for them (WWW-Authenticate: Basic) — the browser's own login prompt, whose credentials
// it then sends with the page's requests too.

//go:embed ui/index.html
var uiPage []byte

func (s *Server) uiRoutes() {
	if !s.opts.UI {
		return
	}
	s.mux.HandleFunc("GET /{$}", s.uiIndex)
	s.mux.HandleFunc("GET /ui/models", s.on(s.uiModels))
}

func (s *Server) uiIndex(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// Everything is inline; nothing may come from elsewhere.
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	_, _ = w.Write(uiPage)
}

// uiModels lists the causal-lm models for completions and, apart, the text-to-image priors
// (a text2image.json in their directory) for images.
func (s *Server) uiModels(w http.ResponseWriter, r *http.Request, st *state) {
	out := struct {
		Completions []string `json:"completions"`
		Images      []string `json:"images"`
	}{Completions: []string{}, Images: []string{}}
	for _, m := range st.e.Models() {
		if ms, _ := st.e.Status(m.Name); m.Task != pipelines.TaskCausalLM || !ms.Available() {
			continue // unloaded on request models are left out, as by GET /v1/models
		}
		if _, err := os.Stat(filepath.Join(m.Path, sdk.Text2ImageFile)); err == nil {
			out.Images = append(out.Images, m.Name)
		} else {
			out.Completions = append(out.Completions, m.Name)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// uiBasicAuthorized: with the playground on, HTTP Basic credentials whose password is the
// token (compared as authorized compares the bearer token).
func (s *Server) uiBasicAuthorized(r *http.Request) bool {
	if !s.opts.UI {
		return false
	}
	_, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	got := sha256.Sum256([]byte(pass))
	return subtle.ConstantTimeCompare(got[:], s.token[:]) == 1
}

// uiSameOrigin: with the playground on, a request whose Origin is the server's own (the page's
// fetches; Host has been checked already) is not a cross-origin one.
func (s *Server) uiSameOrigin(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	return s.opts.UI && err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host == r.Host && u.Path == ""
}
