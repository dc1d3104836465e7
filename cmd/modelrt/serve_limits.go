package main

import (
	"github.com/spf13/pflag"

	"github.com/modelrt/modelrt/runtime/server"
)

// registerLimits adds the flags of the daemon's connection and input limits (docs/server.md,
// "Limits"); each defaults to the server package's default.
func registerLimits(fl *pflag.FlagSet, o *server.Options) {
	fl.DurationVar(&o.ReadHeaderTimeout, "read-header-timeout", server.DefaultReadHeaderTimeout, "time a request's header may take to arrive")
	fl.DurationVar(&o.BodyTimeout, "body-timeout", server.DefaultBodyTimeout, "time a request's body may take to arrive (408 beyond)")
	fl.DurationVar(&o.IdleTimeout, "idle-timeout", server.DefaultIdleTimeout, "time a kept-alive connection may wait for its next request")
	fl.IntVar(&o.MaxConnections, "max-connections", server.DefaultMaxConnections, "connections served at once; more wait to be accepted")
}
