package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/modelrt/modelrt/runtime/server"
)

// serveGRPC starts the KServe v2 gRPC service on --grpc-listen (when given) and returns the
// function that announces its address on stdout (after the HTTP address, which stays the first
// line) and the one that stops it: gracefully until ctx ends, then at once.
func serveGRPC(f *serveFlags, srv *server.Server, log *slog.Logger, token string) (announce func(io.Writer), stop func(context.Context), err error) {
	if f.grpcListen == "" {
		return func(io.Writer) {}, func(context.Context) {}, nil
	}
	ln, err := net.Listen("tcp", f.grpcListen)
	if err != nil {
		return nil, nil, fmt.Errorf("--grpc-listen %s: %w", f.grpcListen, err)
	}
	if host, _, _ := net.SplitHostPort(f.grpcListen); token == "" && !isLoopback(host) {
		log.Warn("gRPC listening beyond loopback without --auth-token-file: anyone who can reach the port can use the models", "grpc_listen", ln.Addr().String())
	}
	gs := srv.GRPCServer()
	go func() {
		if err := gs.Serve(srv.Listener(ln)); err != nil {
			log.Error("gRPC server stopped", "err", err)
		}
	}()
	announce = func(w io.Writer) { fmt.Fprintf(w, "grpc listening on %s\n", ln.Addr()) }
	return announce, func(ctx context.Context) {
		done := make(chan struct{})
		go func() { gs.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			gs.Stop()
		}
	}, nil
}
