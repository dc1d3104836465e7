package sdk

import (
	"strings"
	"testing"
)

func TestFactsRoundTrip(t *testing.T) {
	lm := LMFacts{VocabSize: 50257, Context: 1024, EOS: 50256, MaxInferBytes: 3 << 30}
	if got, err := LMFactsOf(ModelInfo{Metadata: lm.Metadata()}); err != nil || got != lm {
		t.Errorf("LMFacts round trip: %+v, %v; want %+v", got, err, lm)
	}
	// Unknown facts stay off the wire and read back as unknown.
	none := LMFacts{VocabSize: 7, EOS: -1}
	meta := none.Metadata()
	if _, ok := meta[MetaNPositions]; ok || len(meta) != 1 {
		t.Errorf("Metadata of %+v = %v: want only %s", none, meta, MetaVocabSize)
	}
	if got, _ := LMFactsOf(ModelInfo{Metadata: meta}); got != none {
		t.Errorf("LMFactsOf(%v) = %+v, want %+v", meta, got, none)
	}
	if err := none.Check(); err == nil || !strings.Contains(err.Error(), MetaNPositions) {
		t.Errorf("Check of %+v = %v, want an error naming %s", none, err, MetaNPositions)
	}
	if err := lm.Check(); err != nil {
		t.Errorf("Check of %+v: %v", lm, err)
	}

	vae := VAEFacts{InChannels: 3, OutChannels: 3, LatentChannels: 4, DownsampleFactor: 8, ScalingFactor: 0.18215, SampleSize: 512,
		MaxInferBytes: DefaultMaxInferBytes, MaxImageSize: 2048}
	meta = vae.Metadata()
	if meta[MetaScalingFactor] != "0.18215" || meta[MetaSampleSize] != "512" || meta[MetaMaxInferBytes] != "2147483648" || meta[MetaMaxImageSize] != "2048" {
		t.Errorf("Metadata of %+v = %v", vae, meta)
	}
	if got, err := VAEFactsOf(ModelInfo{Metadata: meta}); err != nil || got != vae {
		t.Errorf("VAEFacts round trip: %+v, %v; want %+v", got, err, vae)
	}
	if err := vae.Check(); err != nil {
		t.Errorf("Check of %+v: %v", vae, err)
	}
	if err := (VAEFacts{LatentChannels: 4, DownsampleFactor: 8}).Check(); err == nil || !strings.Contains(err.Error(), MetaInChannels) {
		t.Errorf("Check without channels = %v, want an error naming %s", err, MetaInChannels)
	}
}

func TestFactsBadValues(t *testing.T) {
	for _, c := range []struct {
		key, value string
		vae        bool
	}{
		{MetaVocabSize, "lots", false},
		{MetaEOSTokenID, "1.5", false},
		{MetaLatentChannels, "four", true},
		{MetaDownsampleFactor, "-8", true},
		{MetaScalingFactor, "x", true},
		{MetaMaxInferBytes, "-1", false},
		{MetaMaxInferBytes, "2GiB", true},
		{MetaMaxImageSize, "-64", true},
	} {
		info := ModelInfo{Name: "m", Metadata: map[string]string{c.key: c.value}}
		var err error
		if c.vae {
			_, err = VAEFactsOf(info)
		} else {
			_, err = LMFactsOf(info)
		}
		if err == nil || !strings.Contains(err.Error(), `model "m"`) || !strings.Contains(err.Error(), c.key) {
			t.Errorf("%s = %q: err = %v, want one naming the model and the key", c.key, c.value, err)
		}
	}
}
