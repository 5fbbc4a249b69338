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
//	relays.go    the relay registry: one owner per name, or its replicas
//	sessions.go  session tokens, pairing and splicing of data connections
//	steering.go  which of a relay's owners gets a session (health, load)
//	members.go   live connections per member, revocation, member status
//	commands.go  the vendor command queue and its delivery
//	releases.go  signed releases served to nodes
//	admin.go     the admin API on an owner-only socket, and its offline twin
//	clusterstore.go  what a store shared by relay nodes adds (ClusterStore, events)
//	cluster.go   relay nodes of one cluster: listing, presence leases, links, events
//
// # A cluster
//
// With a store that implements ClusterStore (hub/store/pgstore), any
// number of relay nodes serve one project. Each keeps its own directory
// (its key, its identifier) and is listed in the shared database; a
// relay name's live registration is held by one relay node under a lease
// it renews, and a session to a relay held elsewhere is carried over a
// link the two relay nodes authenticate with their listed keys, then
// splice as raw bytes (the nodes' own ciphertext). A relay node without
// the authority forwards authority connections to the one that has it.
// Revocations, moved or released relays, commands and their answers
// reach the relay node holding a connection as store events. See
// cluster.go.
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
