package sdk

import (
	"errors"
	"fmt"
)

// Code classifies an error. The values mirror the gRPC status codes they travel as.
type Code int

// Codes a backend returns. Anything else a backend returns is CodeInternal.
const (
	CodeOK                 Code = 0
	CodeCanceled           Code = 1
	CodeUnknown            Code = 2
	CodeInvalidArgument    Code = 3
	CodeDeadlineExceeded   Code = 4
	CodeNotFound           Code = 5
	CodeAlreadyExists      Code = 6
	CodeResourceExhausted  Code = 8
	CodeFailedPrecondition Code = 9
	CodeUnimplemented      Code = 12
	CodeInternal           Code = 13
	CodeUnavailable        Code = 14
)

var codeNames = map[Code]string{
	CodeOK: "OK", CodeCanceled: "Canceled", CodeUnknown: "Unknown", CodeInvalidArgument: "InvalidArgument",
	CodeDeadlineExceeded: "DeadlineExceeded", CodeNotFound: "NotFound", CodeAlreadyExists: "AlreadyExists",
	CodeResourceExhausted: "ResourceExhausted", CodeFailedPrecondition: "FailedPrecondition",
	CodeUnimplemented: "Unimplemented", CodeInternal: "Internal", CodeUnavailable: "Unavailable",
}

func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("Code(%d)", int(c))
}

// Error is an error with a Code. It is what crosses the plugin boundary.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return e.Code.String() + ": " + e.Message }

// Errorf returns an *Error with the given code.
func Errorf(code Code, format string, args ...any) error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// InvalidArgument reports a request the caller must change: bad tensors, ids out of range.
func InvalidArgument(format string, args ...any) error {
	return Errorf(CodeInvalidArgument, format, args...)
}

// NotFound reports an unknown model or session.
func NotFound(format string, args ...any) error { return Errorf(CodeNotFound, format, args...) }

// FailedPrecondition reports a request that is valid but not in this state (model not loaded).
func FailedPrecondition(format string, args ...any) error {
	return Errorf(CodeFailedPrecondition, format, args...)
}

// ResourceExhausted reports a limit reached: memory, sessions, context length.
func ResourceExhausted(format string, args ...any) error {
	return Errorf(CodeResourceExhausted, format, args...)
}

// Unimplemented reports a task or capability the backend does not have.
func Unimplemented(format string, args ...any) error {
	return Errorf(CodeUnimplemented, format, args...)
}

// Internal reports a bug or an unexpected failure inside the backend.
func Internal(format string, args ...any) error { return Errorf(CodeInternal, format, args...) }

// CodeOf returns the Code of err: the Code of the first *Error in its chain, CodeCanceled or
// CodeDeadlineExceeded for context errors, CodeOK for nil and CodeUnknown otherwise.
func CodeOf(err error) Code {
	if err == nil {
		return CodeOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return codeOfContext(err)
}
