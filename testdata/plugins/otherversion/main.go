// Command otherversion is a plugin built for protocol version 2 of modelrt: the host (v1) must
// refuse it with an error that names both versions. It uses go-plugin directly, as a plugin of a
// future SDK would.
package main

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/modelrt/modelrt/sdk"
)

type v2 struct{ plugin.NetRPCUnsupportedPlugin }

func (v2) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error { return nil }
func (v2) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, nil
}

func main() {
	hs := sdk.Handshake
	hs.ProtocolVersion = 2
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  hs,
		VersionedPlugins: map[int]plugin.PluginSet{2: {sdk.PluginName: v2{}}},
		GRPCServer:       plugin.DefaultGRPCServer,
	})
}
