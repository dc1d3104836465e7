package server

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// uploads are the images of one pipeline request, written to a private directory so that an
// image.load stage can read them: the request supplies the bytes, the server the file name.
// remove deletes them when the run is over.
type uploads struct {
	dir    string
	n      int
	limits imageLimits       // of the images the pipeline takes
	inputs map[string]string // file → input name
}

// imageUpload is an image in a request: the same shape as an image output.
type imageUpload struct {
	ContentType string `json:"content_type"`
	Data        string `json:"data"`
}

// add checks from its header that raw is a PNG or JPEG image within u.limits for input name, and
// writes it; it returns the file's path. The pixels are decoded by the pipeline's image.load
// stage, after admission.
func (u *uploads) add(name string, raw json.RawMessage) (string, error) {
	var img imageUpload
	if err := json.Unmarshal(raw, &img); err != nil || img.Data == "" {
		return "", errorf(http.StatusBadRequest, "invalid_input", `input %q: want an image {"content_type": "image/png", "data": BASE64} (the server does not take file names)`, name)
	}
	b, err := base64.StdEncoding.DecodeString(img.Data)
	if err != nil {
		return "", errorf(http.StatusBadRequest, "invalid_input", "input %q: data is not base64: %v", name, err)
	}
	if err := checkImageHeader(name, b, u.limits); err != nil {
		return "", err
	}
	if u.dir == "" {
		if u.dir, err = os.MkdirTemp("", "modelrt-upload-"); err != nil {
			return "", fmt.Errorf("input %q: %w", name, err)
		}
	}
	u.n++
	path := filepath.Join(u.dir, fmt.Sprintf("image-%d", u.n))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return "", fmt.Errorf("input %q: %w", name, err)
	}
	if u.inputs == nil {
		u.inputs = map[string]string{}
	}
	u.inputs[path] = name
	return path, nil
}

// redact keeps the server's file names out of an error about an upload (an image.load stage
// that cannot decode it names the file): each file is named by its input instead.
func (u *uploads) redact(err error) error {
	if err == nil || u.dir == "" {
		return err
	}
	he := *classify(err)
	for path, name := range u.inputs {
		he.msg = strings.ReplaceAll(he.msg, path, fmt.Sprintf("input %q", name))
	}
	he.msg = strings.ReplaceAll(he.msg, u.dir, "(upload)")
	return &he
}

func (u *uploads) remove() {
	if u.dir != "" {
		_ = os.RemoveAll(u.dir)
	}
}
