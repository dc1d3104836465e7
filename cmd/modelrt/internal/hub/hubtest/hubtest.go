// Package hubtest serves a model directory the way the Hugging Face hub does, for tests of
// package hub and `modelrt pull` without a network: {repo}/resolve/{revision}/{file} answers
// small files directly (ETag = the git blob sha1, as the hub does) and *.safetensors / *.onnx*
// files with a 302 to /lfs/{sha256} carrying X-Linked-Size and X-Linked-Etag; the LFS store
// honours Range requests (http.ServeContent). Faults can be injected per file.
package hubtest

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Server is a running fake hub. Its fields are set before the first request.
type Server struct {
	*httptest.Server
	// Repo and Revision are the only ones served ("acme/tiny", "main").
	Repo, Revision string
	// DropOnce names files whose first full download is cut after half the bytes (the
	// connection is aborted), to test resumption.
	DropOnce map[string]bool
	// Alias is an old name of Repo: its URLs redirect (307) to Repo's, as the hub does for
	// renamed repositories (gpt2 → openai-community/gpt2).
	Alias string
	// BadEtag names LFS files whose X-Linked-Etag announces a wrong sha256.
	BadEtag map[string]bool

	dir     string
	mu      sync.Mutex
	dropped map[string]bool
	log     []Request
}

// Request is one request the server saw.
type Request struct {
	Method, Path, Range string
}

// NewServer serves the files of dir (subdirectories included) as repo at revision "main".
func NewServer(dir, repo string) *Server {
	s := &Server{Repo: repo, Revision: "main", dir: dir, DropOnce: map[string]bool{}, BadEtag: map[string]bool{}, dropped: map[string]bool{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Endpoint is the hub endpoint to pass to `modelrt pull --endpoint`.
func (s *Server) Endpoint() string { return s.URL }

// Requests returns the requests seen so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.log...)
}

// IsLFS reports whether the hub would store name with Git LFS (and redirect to its CDN).
func IsLFS(name string) bool {
	return strings.HasSuffix(name, ".safetensors") || strings.Contains(name, ".onnx")
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.log = append(s.log, Request{Method: r.Method, Path: r.URL.Path, Range: r.Header.Get("Range")})
	s.mu.Unlock()
	if sum, ok := strings.CutPrefix(r.URL.Path, "/lfs/"); ok {
		s.serveLFS(w, r, sum)
		return
	}
	if s.Alias != "" {
		if rest, ok := strings.CutPrefix(r.URL.Path, "/"+s.Alias+"/"); ok {
			http.Redirect(w, r, "/"+s.Repo+"/"+rest, http.StatusTemporaryRedirect)
			return
		}
	}
	prefix := "/" + s.Repo + "/resolve/" + s.Revision + "/"
	name, ok := strings.CutPrefix(r.URL.Path, prefix)
	if !ok {
		http.Error(w, "Repository not found", http.StatusNotFound)
		return
	}
	data, err := s.read(name)
	if err != nil {
		w.Header().Set("X-Error-Code", "EntryNotFound")
		http.Error(w, "Entry not found", http.StatusNotFound)
		return
	}
	if IsLFS(name) {
		sum := sha256.Sum256(data)
		etag := hex.EncodeToString(sum[:])
		if s.BadEtag[name] {
			etag = strings.Repeat("0", 64)
		}
		w.Header().Set("X-Linked-Size", fmt.Sprint(len(data)))
		w.Header().Set("X-Linked-Etag", `"`+etag+`"`)
		w.Header().Set("Location", "/lfs/"+hex.EncodeToString(sum[:])+"?name="+name)
		w.WriteHeader(http.StatusFound)
		return
	}
	blob := sha1.Sum(append([]byte(fmt.Sprintf("blob %d\x00", len(data))), data...))
	w.Header().Set("ETag", `"`+hex.EncodeToString(blob[:])+`"`)
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
}

func (s *Server) serveLFS(w http.ResponseWriter, r *http.Request, sum string) {
	name := r.URL.Query().Get("name")
	data, err := s.read(name)
	if got := sha256.Sum256(data); err != nil || hex.EncodeToString(got[:]) != sum {
		http.Error(w, "no such object", http.StatusNotFound)
		return
	}
	s.mu.Lock()
	drop := r.Method == http.MethodGet && s.DropOnce[name] && !s.dropped[name] && r.Header.Get("Range") == ""
	if drop {
		s.dropped[name] = true
	}
	s.mu.Unlock()
	if drop {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.WriteHeader(http.StatusOK)
		w.Write(data[:len(data)/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the client sees the connection close mid-body
	}
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
}

func (s *Server) read(name string) ([]byte, error) {
	if name == "" || strings.Contains(name, "..") {
		return nil, os.ErrNotExist
	}
	return os.ReadFile(filepath.Join(s.dir, filepath.FromSlash(name)))
}
