package server

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/internal/plugintest"
)

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

// TestImagesOpenAINodeClient: the official OpenAI Node client's images.generate works against
// the daemon unchanged, and a URL request fails with its BadRequestError.
func TestImagesOpenAINodeClient(t *testing.T) {
	dir := plugintest.OpenAINode(t)
	_, ts := newImagesServer(t, Options{AuthToken: "s3cret"})
	out := plugintest.RunNode(t, dir, "images.js", nodeImagesScript, nil, "BASE_URL="+ts.URL)
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
