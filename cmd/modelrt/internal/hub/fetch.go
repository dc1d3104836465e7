package hub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// PartSuffix is appended to a file's name while it downloads.
const PartSuffix = ".part"

// DefaultRetries is how many times a dropped download is resumed before Fetch gives up.
const DefaultRetries = 4

// Client downloads files. The zero value works: it uses http.DefaultClient, no token and no
// progress output.
type Client struct {
	HTTP *http.Client
	// Token is sent as "Authorization: Bearer" (net/http drops it on redirects to other hosts,
	// such as the hub's CDN).
	Token string
	// Progress receives one line per file event and, for long downloads, a line every
	// ProgressEvery; nil is silent.
	Progress      io.Writer
	ProgressEvery time.Duration
	// Retries bounds the resumptions of one file after a dropped connection or a 5xx answer
	// (DefaultRetries when 0; negative means none).
	Retries int
	// Backoff is the first wait before a retry; it doubles each time (200ms when 0).
	Backoff time.Duration
}

// Meta is what a HEAD request tells of a file before it is downloaded.
type Meta struct {
	Size   int64  // -1 when unknown
	SHA256 string // lowercase hex, "" when the hub gave none
}

// Fetched describes one file Fetch put in place.
type Fetched struct {
	Name     string
	Size     int64
	SHA256   string // of the bytes on disk
	Verified bool   // the sha256 was checked against the hub's or the caller's
	Resumed  bool   // some bytes came from an earlier attempt's .part file
	UpToDate bool   // the file was already there with the expected sha256; nothing was downloaded
}

func (c *Client) client() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

func (c *Client) newRequest(ctx context.Context, method, u string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "modelrt-pull")
	// Byte offsets, sizes and digests are of the file as stored: a transparently gunzipped body
	// (net/http asks for gzip on its own when there is no Range) would not resume at the
	// right offset if a later request got the compressed form.
	req.Header.Set("Accept-Encoding", "identity")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return req, nil
}

// statusError describes an HTTP answer that is not the file.
func statusError(u string, resp *http.Response) error {
	switch resp.StatusCode {
	case http.StatusNotFound:
		return fmt.Errorf("%s: %w (HTTP 404)", u, ErrNotFound)
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("%s: HTTP %d: access denied (a private or gated repository needs $%s)", u, resp.StatusCode, EnvToken)
	}
	return fmt.Errorf("%s: HTTP %s", u, resp.Status)
}

// Head asks for u's size and sha256. It follows redirects (a renamed repository: gpt2 →
// openai-community/gpt2) until an answer carries X-Linked-Size or X-Linked-Etag, and stops
// there: the hub puts them on its redirect to the CDN, not on the CDN's answer. A server that
// refuses HEAD gives an empty Meta, not an error.
func (c *Client) Head(ctx context.Context, u string) (Meta, error) {
	hc := *c.client()
	hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if r := req.Response; r != nil && (r.Header.Get("X-Linked-Size") != "" || r.Header.Get("X-Linked-Etag") != "") {
			return http.ErrUseLastResponse
		}
		if len(via) >= 10 {
			return fmt.Errorf("%s: more than 10 redirects", u)
		}
		return nil
	}
	req, err := c.newRequest(ctx, http.MethodHead, u)
	if err != nil {
		return Meta{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Meta{}, err
	}
	resp.Body.Close()
	m := Meta{Size: -1}
	switch {
	case resp.StatusCode == http.StatusMethodNotAllowed || resp.StatusCode == http.StatusNotImplemented:
		return m, nil
	case resp.StatusCode >= 300 && resp.StatusCode < 400, resp.StatusCode == http.StatusOK:
	default:
		return m, statusError(u, resp)
	}
	if s := resp.Header.Get("X-Linked-Size"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
			m.Size = n
		}
	} else if resp.StatusCode == http.StatusOK && resp.ContentLength >= 0 {
		m.Size = resp.ContentLength
	}
	m.SHA256 = etagSHA256(resp.Header.Get("X-Linked-Etag"))
	if m.SHA256 == "" && resp.StatusCode == http.StatusOK {
		// A mirror serving LFS files directly may put the sha256 in the ETag itself.
		m.SHA256 = etagSHA256(resp.Header.Get("ETag"))
	}
	return m, nil
}

// Fetch downloads u to dest through dest+PartSuffix and renames it into place once its size
// matches meta (when known) and its sha256 matches wantSHA (or else the hub's, when known).
// A .part left by an earlier run is resumed with a Range request; a dropped connection is
// resumed up to Retries times. A file that fails its checks is deleted, .part included, so
// the next run starts clean.
func (c *Client) Fetch(ctx context.Context, name, u, dest, wantSHA string) (*Fetched, error) {
	meta, err := c.Head(ctx, u)
	if err != nil {
		return nil, err
	}
	if wantSHA == "" {
		wantSHA = meta.SHA256
	}
	f := &Fetched{Name: name}
	if wantSHA != "" {
		if sum, n, err := fileSHA256(dest); err == nil && sum == wantSHA {
			f.Size, f.SHA256, f.Verified, f.UpToDate = n, sum, true, true
			c.say("%s: up to date (sha256 %s…)", name, sum[:12])
			return f, nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return nil, err
	}
	part := dest + PartSuffix
	if st, err := os.Stat(part); err == nil && meta.Size >= 0 && st.Size() > meta.Size {
		os.Remove(part) // longer than the file: not a prefix of it
	}
	retries := c.Retries
	if retries == 0 {
		retries = DefaultRetries
	}
	backoff := c.Backoff
	if backoff == 0 {
		backoff = 200 * time.Millisecond
	}
	for attempt := 0; ; attempt++ {
		resumed, err := c.getOnce(ctx, name, u, part, meta.Size)
		f.Resumed = f.Resumed || resumed
		if err == nil {
			break
		}
		if !retryable(err) || attempt >= retries || ctx.Err() != nil {
			return nil, err
		}
		c.say("%s: %v; resuming in %v (retry %d of %d)", name, err, backoff, attempt+1, retries)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff *= 2
	}
	sum, n, err := fileSHA256(part)
	if err != nil {
		return nil, err
	}
	if meta.Size >= 0 && n != meta.Size {
		os.Remove(part)
		return nil, fmt.Errorf("%s: %w: got %d bytes, the hub announced %d", u, ErrSize, n, meta.Size)
	}
	if wantSHA != "" && sum != wantSHA {
		os.Remove(part)
		return nil, fmt.Errorf("%s: %w: got %s, want %s", u, ErrChecksum, sum, wantSHA)
	}
	if err := os.Rename(part, dest); err != nil {
		return nil, err
	}
	f.Size, f.SHA256, f.Verified = n, sum, wantSHA != ""
	how := "size only"
	if f.Verified {
		how = "sha256 verified"
	} else if meta.Size < 0 {
		how = "unchecked: the hub gave no size or sha256"
	}
	c.say("%s: %s (%s)", name, formatBytes(n), how)
	return f, nil
}

// errRetry marks an error worth a resumed attempt (a dropped body or a 5xx answer).
type errRetry struct{ err error }

func (e errRetry) Error() string { return e.err.Error() }
func (e errRetry) Unwrap() error { return e.err }

func retryable(err error) bool {
	var r errRetry
	return errors.As(err, &r)
}

// getOnce appends the rest of u to part, asking for bytes from part's current size on.
func (c *Client) getOnce(ctx context.Context, name, u, part string, size int64) (resumed bool, err error) {
	out, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return false, err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	offset, err := out.Seek(0, io.SeekEnd)
	if err != nil {
		return false, err
	}
	if size >= 0 && offset == size {
		return offset > 0, nil // an earlier attempt got every byte
	}
	req, err := c.newRequest(ctx, http.MethodGet, u)
	if err != nil {
		return false, err
	}
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	resp, err := c.client().Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return false, err
		}
		return false, errRetry{fmt.Errorf("%s: %w", u, err)}
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		if offset > 0 {
			c.say("%s: the server ignored the range request; starting over", name)
		}
		if err := out.Truncate(0); err != nil {
			return false, err
		}
		if _, err := out.Seek(0, io.SeekStart); err != nil {
			return false, err
		}
		offset = 0
	case resp.StatusCode == http.StatusPartialContent:
		first, _, _, err := ParseContentRange(resp.Header.Get("Content-Range"))
		if err != nil {
			return false, fmt.Errorf("%s: %w", u, err)
		}
		if first != offset {
			return false, fmt.Errorf("%s: asked for bytes from %d, the server sent from %d", u, offset, first)
		}
		c.say("%s: resuming at %s", name, formatBytes(offset))
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		// The .part is not a prefix the server can continue: start over next attempt.
		if err := out.Truncate(0); err != nil {
			return false, err
		}
		return false, errRetry{fmt.Errorf("%s: range from %d not satisfiable", u, offset)}
	case resp.StatusCode >= 500:
		return false, errRetry{statusError(u, resp)}
	default:
		return false, statusError(u, resp)
	}
	total := size
	if total < 0 && resp.ContentLength >= 0 {
		total = offset + resp.ContentLength
	}
	pw := &progressWriter{c: c, name: name, done: offset, startDone: offset, total: total, start: time.Now(), last: time.Now()}
	if _, err := io.Copy(io.MultiWriter(out, pw), resp.Body); err != nil {
		if ctx.Err() != nil {
			return offset > 0, ctx.Err()
		}
		return offset > 0, errRetry{fmt.Errorf("%s: download interrupted after %s: %w", u, formatBytes(pw.done), err)}
	}
	return offset > 0, out.Sync()
}

// progressWriter prints a line every Client.ProgressEvery while bytes flow.
type progressWriter struct {
	c           *Client
	name        string
	done, total int64
	start, last time.Time
	startDone   int64
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.done += int64(len(b))
	every := p.c.ProgressEvery
	if every == 0 {
		every = 2 * time.Second
	}
	if now := time.Now(); now.Sub(p.last) >= every {
		p.last = now
		rate := float64(p.done-p.startDone) / now.Sub(p.start).Seconds()
		if p.total > 0 {
			p.c.say("%s: %s of %s (%.0f%%), %s/s", p.name, formatBytes(p.done), formatBytes(p.total),
				100*float64(p.done)/float64(p.total), formatBytes(int64(rate)))
		} else {
			p.c.say("%s: %s, %s/s", p.name, formatBytes(p.done), formatBytes(int64(rate)))
		}
	}
	return len(b), nil
}

func (c *Client) say(format string, args ...any) {
	if c.Progress != nil {
		fmt.Fprintf(c.Progress, "pull: "+format+"\n", args...)
	}
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func fileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// Options control Pull.
type Options struct {
	// Files to fetch (ModelFiles(false) when nil).
	Files []File
	// SHA256 pins files' digests by name (lowercase hex); they win over the hub's.
	SHA256 map[string]string
}

// Result lists what Pull did.
type Result struct {
	Fetched []*Fetched
	Skipped []string // optional files the hub does not have
}

// Pull fetches opts.Files from base (a URL ending in "/", from Resolve) into out, one file at
// a time. A missing optional file is skipped; a missing required file, or a group of OneOf
// files of which none exists, is an error wrapping ErrMissing. Files already fetched stay.
func (c *Client) Pull(ctx context.Context, base, out string, opts Options) (*Result, error) {
	files := opts.Files
	if files == nil {
		files = ModelFiles(false)
	}
	known := map[string]bool{}
	for _, f := range files {
		known[f.Name] = true
	}
	for name := range opts.SHA256 {
		if !known[name] {
			return nil, fmt.Errorf("--sha256 names %s, which is not among the files pulled", name)
		}
	}
	res := &Result{}
	var oneOf []string
	foundOne := false
	for _, f := range files {
		u := base + escapePath(f.Name)
		dest := filepath.Join(out, filepath.FromSlash(f.Name))
		got, err := c.Fetch(ctx, f.Name, u, dest, opts.SHA256[f.Name])
		if f.Need == OneOf {
			oneOf = append(oneOf, f.Name)
		}
		switch {
		case errors.Is(err, ErrNotFound) && f.Need == Required:
			return res, fmt.Errorf("pull %s: %w: %w", f.Name, ErrMissing, err)
		case errors.Is(err, ErrNotFound):
			if opts.SHA256[f.Name] != "" {
				return res, fmt.Errorf("pull %s (pinned by --sha256): %w", f.Name, err)
			}
			res.Skipped = append(res.Skipped, f.Name)
			c.say("%s: skipped (the hub has no such file)", f.Name)
		case err != nil:
			return res, fmt.Errorf("pull %s: %w", f.Name, err)
		default:
			res.Fetched = append(res.Fetched, got)
			foundOne = foundOne || f.Need == OneOf
		}
	}
	if len(oneOf) > 0 && !foundOne {
		return res, fmt.Errorf("pull %s: %w: no weights; tried %s", base, ErrMissing, strings.Join(oneOf, ", "))
	}
	return res, nil
}

// escapePath escapes each segment of a slash-separated file name for a URL path.
func escapePath(name string) string {
	segs := strings.Split(name, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}
