package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/modelrt/modelrt/runtime/engine"
	"github.com/modelrt/modelrt/runtime/generate"
	"github.com/modelrt/modelrt/runtime/imageio"
	"github.com/modelrt/modelrt/runtime/plugin"
	"github.com/modelrt/modelrt/sdk"
)

// httpError is an error with the HTTP status and the machine-readable code it is answered with.
type httpError struct {
	status int
	code   string
	msg    string
	// retryAfter, in seconds, is sent as Retry-After when > 0.
	retryAfter int
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, code, format string, args ...any) error {
	return &httpError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// statusClientClosed is nginx's convention for a request whose client went away; it only
// appears in logs and metrics, since nobody is left to read it.
const statusClientClosed = 499

// classify maps an error from anywhere below the API to an HTTP status, a code and a message
// fit for a client: configuration file positions are left out.
func classify(err error) *httpError {
	var he *httpError
	if errors.As(err, &he) {
		return he
	}
	msg := clientMessage(err)
	var de *engine.DiagnosticsError
	var nl *engine.NotLoadedError
	switch {
	case errors.As(err, &de):
		return &httpError{status: http.StatusBadRequest, code: "invalid_input", msg: msg}
	case errors.Is(err, imageio.ErrDecode):
		return &httpError{status: http.StatusBadRequest, code: "invalid_input", msg: msg}
	case errors.As(err, &nl):
		return &httpError{status: http.StatusConflict, code: "model_not_loaded",
			msg: fmt.Sprintf("%s; POST /v2/repository/models/%s/load loads it", msg, nl.Model)}
	case errors.Is(err, engine.ErrUnknown):
		return &httpError{status: http.StatusNotFound, code: "not_found", msg: msg}
	case errors.Is(err, generate.ErrContextLength):
		return &httpError{status: http.StatusBadRequest, code: "context_length_exceeded", msg: msg}
	case errors.Is(err, generate.ErrInvalidOptions), errors.Is(err, engine.ErrNoTokenizer):
		return &httpError{status: http.StatusBadRequest, code: "invalid_request", msg: msg}
	case errors.Is(err, plugin.ErrCrashed), errors.Is(err, plugin.ErrFailed), errors.Is(err, plugin.ErrClosed), errors.Is(err, engine.ErrClosed):
		return &httpError{status: http.StatusServiceUnavailable, code: "backend_unavailable", msg: msg, retryAfter: 1}
	case errors.Is(err, context.DeadlineExceeded):
		return &httpError{status: http.StatusGatewayTimeout, code: "timeout", msg: "the request did not finish within the server's request timeout"}
	case errors.Is(err, context.Canceled):
		return &httpError{status: statusClientClosed, code: "canceled", msg: "the request was canceled"}
	}
	var se *sdk.Error
	if errors.As(err, &se) {
		status := map[sdk.Code]int{
			sdk.CodeInvalidArgument: http.StatusBadRequest, sdk.CodeNotFound: http.StatusNotFound,
			sdk.CodeAlreadyExists: http.StatusConflict, sdk.CodeFailedPrecondition: http.StatusBadRequest,
			sdk.CodeResourceExhausted: http.StatusTooManyRequests, sdk.CodeUnimplemented: http.StatusNotImplemented,
			sdk.CodeUnavailable: http.StatusServiceUnavailable, sdk.CodeDeadlineExceeded: http.StatusGatewayTimeout,
			sdk.CodeCanceled: statusClientClosed,
		}[se.Code]
		if status == 0 {
			status = http.StatusInternalServerError
		}
		return &httpError{status: status, code: snake(se.Code.String()), msg: msg}
	}
	return &httpError{status: http.StatusInternalServerError, code: "internal", msg: msg}
}

// clientMessage renders err without the configuration's file positions: diagnostics as
// summary and detail, a stage error by pipeline and stage name.
func clientMessage(err error) string {
	var de *engine.DiagnosticsError
	if errors.As(err, &de) {
		return diagsText(de.Diags)
	}
	var st *engine.StageError
	if errors.As(err, &st) {
		return fmt.Sprintf("pipeline %q stage %q (%s): %s", st.Pipeline, st.Stage, st.Use, clientMessage(st.Err))
	}
	return err.Error()
}

func diagsText(diags hcl.Diagnostics) string {
	parts := make([]string, 0, len(diags))
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		s := d.Summary
		if d.Detail != "" {
			s += ": " + d.Detail
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// writeError answers with err's status and a JSON body: {"error": "..."} on the KServe v2
// routes (the protocol's shape), OpenAI's {"error": {"message", "type", "code"}} elsewhere.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	he := classify(err)
	if he.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(he.retryAfter))
	}
	writeJSON(w, he.status, errorBody(r, he))
}

func errorBody(r *http.Request, he *httpError) any {
	if strings.HasPrefix(r.URL.Path, "/v2") {
		return map[string]string{"error": he.msg}
	}
	typ := "invalid_request_error"
	switch {
	case he.status == http.StatusUnauthorized:
		typ = "authentication_error"
	case he.status == http.StatusTooManyRequests:
		typ = "rate_limit_error"
	case he.status >= 500:
		typ = "server_error"
	}
	return map[string]any{"error": map[string]any{"message": he.msg, "type": typ, "code": he.code}}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"message":"cannot encode the response","type":"server_error","code":"internal"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// decodeJSON reads one JSON value from the body into v. Every problem is a 4xx naming what is
// wrong: malformed JSON (with its offset), a field of the wrong type, a body beyond the limit.
// The body is read to its end so that the server notices when the client goes away.
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value in the body")
	}
	if err == nil {
		if _, cerr := dec.Token(); cerr == nil {
			err = errors.New("trailing data after the JSON value")
		}
	}
	var mbe *http.MaxBytesError
	var ute *json.UnmarshalTypeError
	var se *json.SyntaxError
	var ntl *numberTooLong
	var gone *clientGone
	switch {
	case err == nil:
		_, _ = io.Copy(io.Discard, r.Body)
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return errorf(http.StatusRequestTimeout, "timeout", "the request body did not arrive within the request timeout")
	case errors.As(err, &gone):
		return &httpError{status: statusClientClosed, code: "client_closed", msg: gone.Error()}
	case errors.As(err, &ntl):
		return errorf(http.StatusBadRequest, "number_too_long", "the request body has %v", ntl)
	case errors.As(err, &mbe):
		return errorf(http.StatusRequestEntityTooLarge, "body_too_large", "the request body exceeds the limit of %d bytes", mbe.Limit)
	case errors.As(err, &ute):
		field := ute.Field
		if field == "" {
			field = "the body"
		}
		return errorf(http.StatusBadRequest, "invalid_type", "%s: want %s, have a JSON %s", field, jsonTypeName(ute.Type.String()), ute.Value)
	case errors.As(err, &se):
		return errorf(http.StatusBadRequest, "invalid_json", "malformed JSON at byte %d: %v", se.Offset, se)
	case errors.Is(err, io.EOF):
		return errorf(http.StatusBadRequest, "invalid_json", "empty request body: want a JSON object")
	}
	return errorf(http.StatusBadRequest, "invalid_json", "malformed JSON: %v", err)
}

func jsonTypeName(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "map[") || strings.Contains(goType, "struct") || strings.Contains(goType, "."):
		return "an object"
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "a boolean"
	case strings.HasPrefix(goType, "int") || strings.HasPrefix(goType, "uint"):
		return "an integer"
	}
	return "a number"
}

// snake turns a code name (InvalidArgument) into the API's form (invalid_argument).
func snake(name string) string {
	var b strings.Builder
	for i, r := range name {
		if 'A' <= r && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// restarts sums the restarts of the named backends (all when names is empty).
func restarts(e *engine.Engine, names ...string) int {
	n := 0
	for _, b := range e.Backends() {
		if len(names) == 0 || slices.Contains(names, b.Name) {
			n += b.Restarts
		}
	}
	return n
}

// lostBackend reports a request that failed while a backend it used restarted: whatever the
// backend said (a session the new process does not know is NotFound), the cause is the crash.
func lostBackend(err error, before, after int) error {
	if err == nil || after == before || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return &httpError{status: http.StatusServiceUnavailable, code: "backend_unavailable", retryAfter: 1,
		msg: fmt.Sprintf("a backend restarted during the request (it crashed; its sessions were lost): %s", clientMessage(err))}
}
