// Package sdk is the contract between the modelrt host and its backends: the only package a
// backend author imports.
//
// A backend is a program that implements Backend (and, optionally, Sessions and StatsReporter)
// and calls Serve from its main function:
//
//	func main() { sdk.Serve(&myBackend{}) }
//
// The host starts it as a child process and talks to it over gRPC (hashicorp/go-plugin, mutual TLS
// negotiated automatically). The wire types are internal; everything here is plain Go.
//
// Protocol versioning: ProtocolVersion is the protocol's major version. It is the go-plugin
// handshake version and the VersionedPlugins key, so a host refuses a plugin built against another
// major version with an error that names both versions.
//
// Errors: return an *Error (see InvalidArgument, NotFound, ...) for anything the caller can fix;
// it crosses the wire as the matching gRPC status code and comes back to the host as an *Error
// with the same Code. Any other error becomes CodeInternal; a panic in a method is recovered into
// CodeInternal and the plugin keeps serving.
//
// Tasks and tensor names are fixed by the tensor contract (docs/sdk.md): see the Task constants.
package sdk
