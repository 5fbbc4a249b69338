// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package outer_test

import (
	"log"
	"net"

	"github.com/edgeportal/connect/wire/outer"
)

// The hub's `serve --tls-cert FILE --tls-key FILE`: the same accept loop
// and handler as plain TCP, on a wrapped listener.
func ExampleNewListener() {
	cfg, err := outer.ServerConfig("/etc/initech-hub/tls.crt", "/etc/initech-hub/tls.key")
	if err != nil {
		log.Fatal(err) // one line naming the file at fault
	}
	ln, err := net.Listen("tcp", ":443")
	if err != nil {
		log.Fatal(err)
	}
	ln = outer.NewListener(ln, cfg)
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			// Set the handshake deadline, then read the preface as for
			// plain TCP: the TLS handshake (and the upgrade, when an
			// inspecting proxy is in the path) run in that first Read.
			if sc, ok := c.(*outer.ServerConn); ok {
				if err := sc.Handshake(); err == nil {
					if up, via := sc.Upgraded(); up {
						log.Printf("agent %s came through a TLS-terminating proxy (Via: %s)", c.RemoteAddr(), via)
					}
				}
			}
		}()
	}
}
