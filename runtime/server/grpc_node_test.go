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

// grpcNodePackages are the gRPC client and proto loader the test installs from npm, pinned.
var grpcNodePackages = []string{"@grpc/grpc-js@1.13.4", "@grpc/proto-loader@0.7.15"}

// nodeGRPCScript loads the committed proto with @grpc/proto-loader and calls the service as a
// Node application would: metadata, an infer with raw contents, an infer with typed contents,
// the errors of a bad shape and an unknown model, and the repository extension (index, unload,
// load, and a load of an unknown model).
const nodeGRPCScript = `
const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");
const def = loader.loadSync(process.env.PROTO, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
const inference = grpc.loadPackageDefinition(def).inference;
const client = new inference.GRPCInferenceService(process.env.ADDR, grpc.credentials.createInsecure());
const md = new grpc.Metadata();
md.add("authorization", "Bearer s3cret");
const call = (m, req, meta) => new Promise((ok) => client[m](req, meta || md, (err, res) => ok({ err, res })));
(async () => {
  const out = {};
  out.live = (await call("ServerLive", {}, new grpc.Metadata())).res;
  out.noToken = (await call("ModelMetadata", { name: "gpt2" }, new grpc.Metadata())).err.code;
  out.meta = (await call("ModelMetadata", { name: "gpt2" })).res;
  const ids = Buffer.alloc(16);
  ids.writeBigInt64LE(464n, 0); ids.writeBigInt64LE(3290n, 8);
  let r = await call("ModelInfer", { model_name: "gpt2", id: "n1",
    parameters: { logits: { string_param: "last" } },
    inputs: [{ name: "input_ids", datatype: "INT64", shape: [1, 2] }], raw_input_contents: [ids] });
  if (r.err) throw r.err;
  const raw = r.res.raw_output_contents[0];
  out.gpt2 = { id: r.res.id, shape: r.res.outputs[0].shape, bytes: raw.length };
  const latent = Array.from({ length: 24 }, (_, i) => (i % 5) / 5 - 0.4);
  r = await call("ModelInfer", { model_name: "vae", inputs: [{ name: "latent", datatype: "FP32", shape: [1, 4, 2, 3], contents: { fp32_contents: latent } }] });
  if (r.err) throw r.err;
  out.vae = { name: r.res.outputs[0].name, shape: r.res.outputs[0].shape, first: r.res.raw_output_contents[0].readFloatLE(0) };
  r = await call("ModelInfer", { model_name: "vae", inputs: [{ name: "latent", datatype: "FP32", shape: [1, 4, 2, 3], contents: { fp32_contents: latent.slice(1) } }] });
  out.badShape = { code: r.err.code, details: r.err.details };
  r = await call("ModelInfer", { model_name: "nope", inputs: [{ name: "x", datatype: "FP32", shape: [1], contents: { fp32_contents: [1] } }] });
  out.unknown = { code: r.err.code, details: r.err.details };
  r = await call("RepositoryIndex", {});
  if (r.err) throw r.err;
  out.index = r.res.models.map((m) => m.name + ":" + m.version + ":" + m.state);
  r = await call("RepositoryModelUnload", { model_name: "vae" });
  if (r.err) throw r.err;
  r = await call("RepositoryIndex", { ready: true });
  out.readyIndex = r.res.models.map((m) => m.name);
  r = await call("RepositoryModelLoad", { model_name: "vae" });
  if (r.err) throw r.err;
  r = await call("RepositoryModelLoad", { model_name: "nope" });
  out.loadUnknown = { code: r.err.code, details: r.err.details };
  console.log(JSON.stringify(out));
  client.close();
})().catch((e) => { console.error(e); process.exit(1); });
`

// npmPackages installs pkgs once per machine into the user's cache directory (under name) and
// returns the directory holding node_modules; it skips, saying why, when node or npm is absent
// or the registry cannot be reached.
func npmPackages(t *testing.T, name string, pkgs ...string) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not on PATH: the Node client cannot run (%v)", tool, err)
		}
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "modelrt-test", name)
	stamp := filepath.Join(dir, "installed")
	if b, err := os.ReadFile(stamp); err == nil && string(b) == strings.Join(pkgs, " ") {
		return dir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"install", "--no-audit", "--no-fund", "--silent", "--prefix", dir}, pkgs...)
	if out, err := exec.Command("npm", args...).CombinedOutput(); err != nil {
		t.Skipf("npm install %s failed (no registry?): %v\n%s", strings.Join(pkgs, " "), err, out)
	}
	if err := os.WriteFile(stamp, []byte(strings.Join(pkgs, " ")), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runNode runs script with node (env added to the test's) within nodeTimeout and returns its
// standard output.
func runNode(t *testing.T, script string, env ...string) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "script.js")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), nodeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", path)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	return out
}

// nodeTimeout bounds one Node script (a browser start included).
const nodeTimeout = 3 * time.Minute

// TestGRPCNodeClient: @grpc/grpc-js with @grpc/proto-loader, loading the committed proto, calls
// the service unchanged; bad input comes back as INVALID_ARGUMENT and NOT_FOUND.
func TestGRPCNodeClient(t *testing.T) {
	dir := npmPackages(t, "grpc-node", grpcNodePackages...)
	s, _ := newTestServer(t, Options{AuthToken: "s3cret"})
	addr := startGRPCAddr(t, s)
	proto, err := filepath.Abs("kservepb/grpc_predict_v2.proto")
	if err != nil {
		t.Fatal(err)
	}
	out := runNode(t, nodeGRPCScript, "ADDR="+addr, "PROTO="+proto, "NODE_PATH="+filepath.Join(dir, "node_modules"))
	t.Logf("node: %s", out)
	var got struct {
		Live    struct{ Live bool }
		NoToken int
		Meta    struct{ Name string }
		Gpt2    struct {
			ID    string
			Shape []string
			Bytes int
		}
		Vae struct {
			Name  string
			Shape []string
		}
		BadShape, Unknown, LoadUnknown struct {
			Code    int
			Details string
		}
		Index, ReadyIndex []string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	const unauthenticated, invalidArgument, notFound = 16, 3, 5
	if !got.Live.Live || got.NoToken != unauthenticated || got.Meta.Name != "gpt2" {
		t.Errorf("metadata calls: %+v", got)
	}
	if got.Gpt2.ID != "n1" || strings.Join(got.Gpt2.Shape, ",") != "1,1,50257" || got.Gpt2.Bytes != 50257*4 {
		t.Errorf("gpt2 infer: %+v", got.Gpt2)
	}
	if got.Vae.Name != "image" || strings.Join(got.Vae.Shape, ",") != "1,3,4,6" {
		t.Errorf("vae infer: %+v", got.Vae)
	}
	if got.BadShape.Code != invalidArgument || !strings.Contains(got.BadShape.Details, "needs 24 elements") {
		t.Errorf("bad shape: %+v", got.BadShape)
	}
	if got.Unknown.Code != notFound || !strings.Contains(got.Unknown.Details, `"nope"`) {
		t.Errorf("unknown model: %+v", got.Unknown)
	}
	if strings.Join(got.Index, ",") != "gpt2:1:READY,gpt2-chat:1:READY,vae:1:READY" || strings.Join(got.ReadyIndex, ",") != "gpt2,gpt2-chat" {
		t.Errorf("repository index: %v; ready after unloading vae: %v", got.Index, got.ReadyIndex)
	}
	if got.LoadUnknown.Code != notFound || !strings.Contains(got.LoadUnknown.Details, `"nope"`) {
		t.Errorf("load of an unknown model: %+v", got.LoadUnknown)
	}
}
