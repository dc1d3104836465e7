package sdk

import (
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// Serve serves impl as a modelrt backend plugin and does not return. Call it from main.
//
// It installs a log/slog default logger that writes JSON lines in go-plugin's format to stderr,
// where the host picks them up and re-logs them as its own structured records, tagged with the
// plugin's name. The level comes from MODELRT_LOG_LEVEL (debug, info, warn, error; default info),
// which the host sets from its own --log-level.
func Serve(impl Backend) {
	logger := NewPluginLogger(os.Stderr, os.Getenv("MODELRT_LOG_LEVEL"))
	slog.SetDefault(logger)
	shm, err := openShmFromEnv()
	if err != nil {
		// Not fatal: every output can travel inline, only slower.
		logger.Warn("shared memory unavailable; outputs travel over gRPC", "error", err)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: serverPlugins(impl, shm),
		GRPCServer:       NewGRPCServer,
		Logger: hclog.New(&hclog.LoggerOptions{
			Output: os.Stderr, JSONFormat: true, Level: hclog.LevelFromString(levelName(os.Getenv("MODELRT_LOG_LEVEL"))),
		}),
	})
}

// NewPluginLogger returns a slog.Logger writing go-plugin's JSON log lines (@level, @message,
// @timestamp) to w, which the host parses back into structured records.
func NewPluginLogger(w io.Writer, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(levelName(level)))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: lv,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				// go-plugin's relay parses exactly this layout; with any other it re-logs
				// the raw line at debug level, hiding the plugin's warnings and errors.
				return slog.String("@timestamp", a.Value.Time().Format(hclog.TimeFormatJSON))
			case slog.LevelKey:
				return slog.String("@level", strings.ToLower(a.Value.String()))
			case slog.MessageKey:
				return slog.String("@message", a.Value.String())
			}
			return a
		},
	}))
}

func levelName(s string) string {
	switch strings.ToLower(s) {
	case "debug", "trace":
		return "debug"
	case "warn", "warning":
		return "warn"
	case "error":
		return "error"
	}
	return "info"
}
