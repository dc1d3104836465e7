package server

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestKServeV2(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	c := ts.Client()
	for _, p := range []string{"/v2/health/live", "/v2/health/ready", "/v2/models/vae/ready", "/v2/models/gpt2", "/v2", "/v2/models/gpt2/versions/1/ready"} {
		if status, _, body := call(t, c, "GET", ts.URL+p, nil); status != 200 {
			t.Errorf("GET %s: %d %s", p, status, body)
		}
	}
	latent := make([]float32, 1*4*2*3)
	for i := range latent {
		latent[i] = float32(i%5)/5 - 0.4
	}
	req := map[string]any{"id": "r1", "inputs": []map[string]any{{"name": "latent", "datatype": "FP32", "shape": []int{1, 4, 2, 3}, "data": latent}}}
	status, _, body := call(t, c, "POST", ts.URL+"/v2/models/vae/infer", req)
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	var res struct {
		ModelName string `json:"model_name"`
		ID        string `json:"id"`
		Outputs   []struct {
			Name     string    `json:"name"`
			Shape    []int64   `json:"shape"`
			Datatype string    `json:"datatype"`
			Data     []float32 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	if res.ModelName != "vae" || res.ID != "r1" || len(res.Outputs) != 1 || res.Outputs[0].Name != "image" ||
		fmt.Sprint(res.Outputs[0].Shape) != "[1 3 4 6]" || len(res.Outputs[0].Data) != 72 {
		t.Errorf("infer = %+v", res)
	}
	// Nested data (the shape is authoritative) and a causal-lm forward pass.
	nested := `{"inputs":[{"name":"input_ids","datatype":"INT64","shape":[2,2],"data":[[464,3290],[11,13]]}],"parameters":{"logits":"last"}}`
	status, _, body = call(t, c, "POST", ts.URL+"/v2/models/gpt2/infer", nested)
	if status != 200 || !strings.Contains(string(body), `"shape":[2,1,50257]`) {
		t.Errorf("gpt2 infer: %d %.300s", status, body)
	}
}
