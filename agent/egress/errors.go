// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// Hop names the leg of the path to the hub that failed.
type Hop string

// The hops, in the order a connection crosses them.
const (
	// HopProxy is the HTTP proxy itself: reaching it, or its answer to
	// CONNECT (407, 403, other refusals).
	HopProxy Hop = "proxy"
	// HopHub is the hub: directly, or through a proxy that accepted the
	// CONNECT (502/503/504 from the proxy, or a tunnel that closed before
	// the hub answered).
	HopHub Hop = "hub"
	// HopTLS is the outer TLS handshake with the hub (or with a
	// TLS-inspecting proxy pretending to be it).
	HopTLS Hop = "tls"
	// HopUpgrade is the HTTP upgrade inside the outer TLS, refused by a
	// TLS-inspecting proxy.
	HopUpgrade Hop = "upgrade"
)

// HopError is the error of a dial that failed, naming where. Error gives
// one line meant for the user (doctor prints it as is); the fields are for
// programs. It never holds the proxy's password.
type HopError struct {
	Hop  Hop
	Addr string // the hop's address: the proxy's for HopProxy, else the hub's
	Via  string // the proxy's address when the hub was dialled through one

	// Status is the proxy's HTTP status (407, 403, 502, …), or the
	// status of the answer to the upgrade; 0 when there was none.
	Status int
	// Realm is the Basic realm of a 407 (from Proxy-Authenticate).
	Realm string
	// Schemes are the authentication schemes a 407 offered.
	Schemes []string
	// CredentialsSent says whether the refused CONNECT carried
	// Proxy-Authorization; AuthSource says where they came from (a file
	// name, or "HTTPS_PROXY").
	CredentialsSent bool
	AuthSource      string

	// Issuer is the issuer of the certificate seen in a failed TLS
	// handshake, if one was seen.
	Issuer string

	// Reason says what went wrong in a few words; Hint what to do about it.
	Reason string
	Hint   string
	Err    error
}

func (e *HopError) Error() string {
	var b strings.Builder
	switch e.Hop {
	case HopProxy:
		b.WriteString("proxy " + e.Addr)
	case HopHub:
		b.WriteString("hub " + e.Addr)
	case HopTLS:
		b.WriteString("TLS to hub " + e.Addr)
	case HopUpgrade:
		b.WriteString("upgrade to hub " + e.Addr + " inside TLS")
	default:
		b.WriteString(string(e.Hop) + " " + e.Addr)
	}
	if e.Reason != "" {
		b.WriteString(" " + e.Reason)
	}
	if e.Err != nil {
		b.WriteString(": " + shortErr(e.Err))
	}
	if e.Hint != "" {
		b.WriteString("; " + e.Hint)
	}
	return b.String()
}

func (e *HopError) Unwrap() error { return e.Err }

// shortErr drops the "dial tcp 1.2.3.4:5: connect: " layers of network
// errors, leaving what the user needs ("connection refused").
func shortErr(err error) string {
	var dns *net.DNSError
	var sys *os.SyscallError
	switch {
	case errors.As(err, &dns):
		if dns.IsNotFound {
			return "no such host " + strconv.Quote(dns.Name)
		}
		return "DNS lookup of " + strconv.Quote(dns.Name) + " failed: " + dns.Err
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		return "timed out"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &sys):
		return sys.Err.Error()
	}
	var he *HopError
	if errors.As(err, &he) {
		return shortErr(he.Err)
	}
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

// sanitize bounds a string that came from the network for an error
// message and escapes what is not printable.
func sanitize(s string) string {
	const max = 100
	if len(s) > max {
		s = s[:max] + "…"
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}

func errorf(format string, a ...any) error { return fmt.Errorf("egress: "+format, a...) }
