package main

import (
	"net"

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
	fl.IntVar(&o.MaxNumberLen, "max-number-length", server.DefaultMaxNumberLen, "characters of one number in a request (400 beyond)")
	fl.IntVar(&o.MaxResponseBytes, "max-response-bytes", server.DefaultMaxResponseBytes, "size of one response built in memory (413 beyond; ask for binary data or fewer outputs)")
	fl.IntVar(&o.MaxImageFactor, "max-image-factor", server.DefaultMaxImageFactor, "images and latents given to a model: at most this times its sample_size pixels a side")
	fl.IntVar(&o.MaxImageSide, "max-image-side", server.DefaultMaxImageSide, "pixels a side of images given to a model that declares no sample_size")
	fl.BoolVar(&o.SpecialTokens, "allow-special-tokens", false, "read special-token spellings (<|endoftext|>) in prompt text as those tokens, not as text")
	fl.StringSliceVar(&o.AllowedHosts, "allowed-hosts", nil, `Host names served besides loopback ("*": any; default: the --listen address, any when it is 0.0.0.0 or ::)`)
	fl.StringSliceVar(&o.AllowedOrigins, "allowed-origins", nil, `web page origins allowed to call the API, with CORS ("*": any; default: none)`)
}

// listenHosts is --allowed-hosts when it is not given: loopback only for a loopback address
// (the server's default), the address itself for another one, and any host for an
// unspecified address (0.0.0.0, ::), whose names the daemon cannot know.
func listenHosts(listen string) []string {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		return []string{"*"}
	}
	return []string{host}
}
