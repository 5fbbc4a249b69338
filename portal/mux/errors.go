// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package mux

import (
	"errors"
	"strings"
)

// Refusal codes the multiplexer itself sends (the acceptor's application
// sends its own, e.g. portal's "denied" or "unknown-outlet").
const (
	// CodeTooManyStreams: the acceptor already has Config.MaxStreams
	// streams from this peer.
	CodeTooManyStreams = "too-many-streams"
	// CodeBacklogFull: the acceptor's application is not taking streams
	// fast enough (Config.AcceptBacklog are waiting).
	CodeBacklogFull = "backlog-full"
	// CodeGoingAway: the acceptor's session is closing.
	CodeGoingAway = "going-away"
	// CodeClosed is the reset code of a stream closed before the peer's end
	// of stream; CodeReset that of an explicit Reset.
	CodeClosed = "closed"
	CodeReset  = "reset"
)

var (
	// ErrSessionClosed is returned by every stream (and by Open and
	// Accept) after this side closed the session.
	ErrSessionClosed = errors.New("mux: session closed")
	// ErrChannelLost is wrapped by the error every stream returns when the
	// channel under the session ended without the peer's go-away, failed
	// (a cut, an authentication failure, a protocol violation) or the peer
	// closed the session: the stream did not end cleanly.
	ErrChannelLost = errors.New("mux: channel lost")
	// ErrStreamClosed is returned by a stream's methods after its Close.
	ErrStreamClosed = errors.New("mux: stream closed")
	// ErrWriteClosed is returned by Write after CloseWrite.
	ErrWriteClosed = errors.New("mux: write after CloseWrite")
	// ErrTimeout is returned when a deadline passes; it is a net.Error
	// whose Timeout() is true.
	ErrTimeout error = timeoutError{}
)

type timeoutError struct{}

func (timeoutError) Error() string   { return "mux: i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// RefusedError is returned by an opened stream's Read and Write when the
// acceptor refused it. Code and Message come from the acceptor.
type RefusedError struct {
	Code    string
	Message string
}

func (e *RefusedError) Error() string {
	return reason("mux: stream refused", e.Code, e.Message)
}

// ResetError is returned by a stream's Read and Write after a reset.
// Remote says whether the peer reset it.
type ResetError struct {
	Code    string
	Message string
	Remote  bool
}

func (e *ResetError) Error() string {
	s := "mux: stream reset"
	if e.Remote {
		s += " by peer"
	}
	return reason(s, e.Code, e.Message)
}

func reason(s, code, msg string) string {
	var b strings.Builder
	b.WriteString(s)
	if code != "" {
		b.WriteString(": ")
		b.WriteString(code)
	}
	if msg != "" {
		b.WriteString(": ")
		b.WriteString(msg)
	}
	return b.String()
}
