package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// hclogToSlog returns an hclog.Logger (what go-plugin logs through, including every line a
// plugin writes to stderr) whose records end up in l as structured slog records.
func hclogToSlog(l *slog.Logger, name string) hclog.Logger {
	lv := hclog.Info
	switch {
	case l.Enabled(context.Background(), slog.LevelDebug):
		lv = hclog.Debug
	case !l.Enabled(context.Background(), slog.LevelInfo):
		lv = hclog.Warn
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      lv,
		JSONFormat: true,
		Output:     &slogWriter{l: l},
	})
}

// slogWriter parses hclog's JSON lines and re-logs them through slog.
type slogWriter struct {
	mu  sync.Mutex
	l   *slog.Logger
	buf []byte
}

func (w *slogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

func (w *slogWriter) emit(line []byte) {
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		w.l.Info(string(line))
		return
	}
	msg, _ := m["@message"].(string)
	level := slog.LevelInfo
	switch m["@level"] {
	case "trace", "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	attrs := make([]any, 0, 2*len(m))
	for k, v := range m {
		switch k {
		case "@message", "@level", "@timestamp":
			continue
		case "@module":
			k = "module"
		}
		attrs = append(attrs, k, v)
	}
	w.l.Log(context.Background(), level, msg, attrs...)
}
