// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package hub is the vendor's hub: one TCP listener that is both the
// enrollment authority (ticket redemption, credential refresh, tickets made
// by enrollers) and the relay service (relay registry, session tokens, and
// splicing of data connections).
//
// The hub never holds portal keys: the two nodes of a portal run their own
// Noise handshake over the spliced data connections. The hub does not even
// link the portal package (a test enforces it).
//
// Every connection opens with a wire preface naming its kind. Control
// connections speak Noise XX with the hub's static key and then
// wire/control messages; data connections send a session token and are
// spliced to the other node's data connection with that token.
//
// # Files, by job
//
//	server.go    Server, Options, Serve: the listener and the lifetime of every goroutine
//	listen.go    admission caps for connections that have not authenticated yet
//	conn.go      one control connection: its read loop and its own bounded outbound queue
//	dispatch.go  the control handler table
//	enroll.go    redemption, refresh, enroller tickets, leave
//	relays.go    the relay registry
//	sessions.go  session tokens, pairing and splicing of data connections
//	members.go   live connections per member, revocation, member status
//	commands.go  the vendor command queue and its delivery
//	releases.go  signed releases served to nodes
//	admin.go     the admin API on an owner-only socket, and its offline twin
//
// Concurrency: each registry (members, relays, sessions, command waiters)
// has its own mutex, held only for map updates, never across I/O. No
// connection's read loop writes to another connection's socket: it hands
// the message to that connection's bounded queue, which its own writer
// drains, so a node that stops reading slows only itself.
//
// Imported by cmd/hub and by hub/store implementations. Never imports
// agent, portal or installer.
package hub
