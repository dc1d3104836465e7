// Package hub downloads model directories from a Hugging Face–style hub: a repository's files
// are served at {endpoint}/{repo}/resolve/{revision}/{file}, large (LFS) files by a redirect
// whose X-Linked-Size and X-Linked-Etag headers give their size and sha256.
//
// Every file is downloaded into FILE.part, resumed with an HTTP Range request when the
// connection drops (or when a previous run left the .part behind), checked against the size
// and sha256 the hub announces (or the caller pins), and renamed into place only when both
// match, so a model directory never holds a truncated or corrupt file under its real name.
package hub

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// DefaultEndpoint is the hub a bare model name resolves against.
const DefaultEndpoint = "https://huggingface.co"

// EnvEndpoint overrides DefaultEndpoint (a mirror, or a local server).
const EnvEndpoint = "MODELRT_HUB_ENDPOINT"

// EnvToken, when set, is sent as a bearer token (gated repositories on huggingface.co).
const EnvToken = "HF_TOKEN"

var (
	// ErrNotFound: the hub answered 404 for a file.
	ErrNotFound = errors.New("hub: no such file")
	// ErrChecksum: the downloaded bytes do not have the expected sha256.
	ErrChecksum = errors.New("hub: sha256 mismatch")
	// ErrSize: the downloaded bytes do not have the announced size.
	ErrSize = errors.New("hub: size mismatch")
	// ErrMissing: a required file (or every file of a required group) is absent.
	ErrMissing = errors.New("hub: required file missing")
	// ErrRef: a model name, URL or revision that cannot be used.
	ErrRef = errors.New("hub: bad model reference")
)

// Need says how much a model directory needs one file.
type Need int

const (
	// Optional files are skipped when the hub has no such file.
	Optional Need = iota
	// Required files fail the pull when absent.
	Required
	// OneOf files are alternatives: at least one file marked OneOf must exist (the weights).
	OneOf
)

// File is one file of a model directory, by its path relative to the repository root.
type File struct {
	Name string
	Need Need
}

// ModelFiles lists what a modelrt model directory may hold (docs/contracts.md#model-directories): config.json, the
// safetensors weights of a GPT-2 or a diffusers VAE, the tokenizer in any of its three forms,
// the generation configs, and with onnx the ONNX graphs of both layouts (then a graph alone is
// enough weights).
func ModelFiles(onnx bool) []File {
	fs := []File{
		{"config.json", Required},
		{"model.safetensors", OneOf},
		{"diffusion_pytorch_model.safetensors", OneOf},
	}
	for _, n := range []string{"vocab.json", "merges.txt", "tokenizer.json", "encoder.json", "vocab.bpe",
		"tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "genai_config.json"} {
		fs = append(fs, File{n, Optional})
	}
	if onnx {
		for _, n := range []string{"model.onnx", "decoder_model_merged.onnx", "vae_encoder/model.onnx", "vae_decoder/model.onnx"} {
			fs = append(fs, File{n, OneOf})
		}
		for _, n := range []string{"model.onnx_data", "decoder_model_merged.onnx_data", "vae_encoder/config.json", "vae_decoder/config.json"} {
			fs = append(fs, File{n, Optional})
		}
	}
	return fs
}

// repoName is a hub repository: "gpt2" or "owner/name".
var repoName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$`)

// Endpoint returns flag when set, else $MODELRT_HUB_ENDPOINT, else DefaultEndpoint.
func Endpoint(flag string) string {
	if flag != "" {
		return flag
	}
	if e := os.Getenv(EnvEndpoint); e != "" {
		return e
	}
	return DefaultEndpoint
}

// Resolve turns a model reference into the base URL its files live under and a default
// directory name. ref is a repository name ("gpt2", "openai-community/gpt2") fetched from
// {endpoint}/{ref}/resolve/{revision}/, or an http(s) URL used as the base as it is (revision
// then ignored).
func Resolve(ref, endpoint, revision string) (base, dirName string, err error) {
	if strings.Contains(ref, "://") {
		u, err := url.Parse(ref)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", "", fmt.Errorf("%w: %q is not an http(s) URL", ErrRef, ref)
		}
		u.RawQuery, u.Fragment = "", ""
		u.Path = strings.TrimRight(u.Path, "/")
		u.RawPath = ""
		dirName = u.Path[strings.LastIndex(u.Path, "/")+1:]
		if dirName == "" || dirName == "." || dirName == ".." {
			dirName = "model"
		}
		return u.String() + "/", dirName, nil
	}
	if !repoName.MatchString(ref) || strings.Contains(ref, "..") {
		return "", "", fmt.Errorf("%w: %q: want a repository name like gpt2 or openai-community/gpt2, or a URL", ErrRef, ref)
	}
	if revision == "" || strings.Contains(revision, "..") {
		return "", "", fmt.Errorf("%w: revision %q", ErrRef, revision)
	}
	e, err := url.Parse(endpoint)
	if err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" {
		return "", "", fmt.Errorf("%w: endpoint %q is not an http(s) URL", ErrRef, endpoint)
	}
	// A revision such as refs/pr/1 is one path segment on the hub: escape its slashes.
	base = strings.TrimRight(e.String(), "/") + "/" + ref + "/resolve/" + url.PathEscape(revision) + "/"
	return base, ref[strings.LastIndex(ref, "/")+1:], nil
}

// ParseSHA256Flag parses "FILE=HEX" (a --sha256 flag) into the file and a lowercase digest.
func ParseSHA256Flag(s string) (file, hex string, err error) {
	file, hex, ok := strings.Cut(s, "=")
	hex = strings.ToLower(strings.TrimSpace(hex))
	if !ok || file == "" || !isSHA256(hex) {
		return "", "", fmt.Errorf("--sha256 %q: want FILE=64 hex digits", s)
	}
	return file, hex, nil
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// etagSHA256 returns the sha256 an ETag carries, or "" when it is not one: the hub's
// X-Linked-Etag of an LFS file is its sha256 in quotes; a git ETag (sha1) or a weak tag is not.
func etagSHA256(etag string) string {
	etag = strings.TrimPrefix(strings.TrimSpace(etag), "W/")
	etag = strings.ToLower(strings.Trim(etag, `"`))
	if isSHA256(etag) {
		return etag
	}
	return ""
}

// ParseContentRange parses a 206 response's "bytes FIRST-LAST/SIZE" (SIZE may be "*", -1).
func ParseContentRange(s string) (first, last, size int64, err error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), "bytes ")
	if !ok {
		return 0, 0, 0, fmt.Errorf("hub: Content-Range %q: want bytes FIRST-LAST/SIZE", s)
	}
	rng, total, ok := strings.Cut(rest, "/")
	a, b, ok2 := strings.Cut(rng, "-")
	if !ok || !ok2 {
		return 0, 0, 0, fmt.Errorf("hub: Content-Range %q: want bytes FIRST-LAST/SIZE", s)
	}
	if first, err = strconv.ParseInt(a, 10, 64); err == nil {
		last, err = strconv.ParseInt(b, 10, 64)
	}
	if err != nil || first < 0 || last < first {
		return 0, 0, 0, fmt.Errorf("hub: Content-Range %q: bad range", s)
	}
	size = -1
	if total != "*" {
		if size, err = strconv.ParseInt(total, 10, 64); err != nil || size <= last {
			return 0, 0, 0, fmt.Errorf("hub: Content-Range %q: bad size", s)
		}
	}
	return first, last, size, nil
}
