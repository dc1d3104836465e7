package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/modelrt/modelrt/runtime/imageio"
)

// uploads are the images of one pipeline request, written to a private directory so that an
// image.load stage can read them: the request supplies the bytes, the server the file name.
// remove deletes them when the run is over.
type uploads struct {
	dir string
	n   int
}

// imageUpload is an image in a request: the same shape as an image output.
type imageUpload struct {
	ContentType string `json:"content_type"`
	Data        string `json:"data"`
}

// add checks that raw is a decodable PNG or JPEG image for input name and writes it; it
// returns the file's path.
func (u *uploads) add(name string, raw json.RawMessage) (string, error) {
	var img imageUpload
	if err := json.Unmarshal(raw, &img); err != nil || img.Data == "" {
		return "", errorf(http.StatusBadRequest, "invalid_input", `input %q: want an image {"content_type": "image/png", "data": BASE64} (the server does not take file names)`, name)
	}
	b, err := base64.StdEncoding.DecodeString(img.Data)
	if err != nil {
		return "", errorf(http.StatusBadRequest, "invalid_input", "input %q: data is not base64: %v", name, err)
	}
	if _, err := imageio.Decode(bytes.NewReader(b)); err != nil {
		return "", errorf(http.StatusBadRequest, "invalid_input", "input %q: %v", name, err)
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
	return path, nil
}

func (u *uploads) remove() {
	if u.dir != "" {
		_ = os.RemoveAll(u.dir)
	}
}
