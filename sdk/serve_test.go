package sdk

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// The host (go-plugin's stderr relay) parses a plugin's JSON log line only when its @timestamp
// has hclog's fixed layout; otherwise the whole line is re-logged verbatim at debug level and a
// plugin's warnings and errors vanish at the default level.
func TestPluginLoggerTimestampParsesOnTheHost(t *testing.T) {
	for range 50 { // RFC 3339 with trimmed nanoseconds matches the layout only by chance
		var buf bytes.Buffer
		NewPluginLogger(&buf, "info").Warn("shared memory unavailable")
		var line map[string]any
		if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
			t.Fatalf("log line %q: %v", buf.String(), err)
		}
		ts, _ := line["@timestamp"].(string)
		if _, err := time.Parse(hclog.TimeFormatJSON, ts); err != nil {
			t.Fatalf("@timestamp %q does not parse as go-plugin's %q: %v", ts, hclog.TimeFormatJSON, err)
		}
		if line["@level"] != "warn" || line["@message"] != "shared memory unavailable" {
			t.Fatalf("log line %q: want @level warn and the message", buf.String())
		}
	}
}
