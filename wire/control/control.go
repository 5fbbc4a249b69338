// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package control defines the messages of the control channel between a
// node (or the authority) and the relay, of the end-to-end channel between
// a node and the authority, and of the portal handshake between two nodes.
//
// A control channel is a Noise XX stream (wire/noiseconn) carrying
// length-prefixed (wire.WriteMessage) CBOR Msg values. Requests carry a
// non-zero ID and any type but TypeResponse; every answer has type
// TypeResponse and the request's ID. Everything else is a push (ID 0), so
// a receiver tells answers from pushes by type alone. Unknown fields are
// ignored so either side may add fields; unknown request types get an
// ErrCodeUnsupported answer.
//
// # Message set history
//
//	1: hello, redeem, refresh, register-relay, open-session, incoming,
//	   create-ticket, ping, revoked, leave, command, command-ack, node-state,
//	   release-check, release-fetch, update-result.
//	2: node pairs share one channel (hybrid Noise, channel-hello, portals
//	   as streams opened with stream-open); the credential rides in the
//	   client hello and the relay answers with welcome; credential (a refreshed one, to the relay); revocations and
//	   live-status (authority → relay); authority-session (relay →
//	   authority). Redeem, refresh, create-ticket and leave go to the
//	   authority over the node's end-to-end channel with it, never to the
//	   relay.
//	   Later in set 2, fields only (each omitted when empty, so either
//	   side may be older): relay replicas. node-state carries Draining
//	   and Down (outlets whose target is unreachable); open-session
//	   carries the first portal's Outlet and the owners to Avoid, and its
//	   answer how many owners are Healthy; live-status carries each
//	   node's replica and health; create-ticket carries Replica; the
//	   refusals relay-unhealthy and (of a stream) draining.
//
// May be imported by enroll, portal, hub, agent.
package control

import (
	"fmt"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/edgeportal/connect/wire"
)

// Type identifies a control message.
type Type uint16

// Message types.
const (
	TypeRedeem        Type = 1  // node→hub: RedeemRequest → RedeemResponse
	TypeRefresh       Type = 2  // node→hub: RefreshRequest → CredentialResponse
	TypeRegisterRelay Type = 3  // node→hub: RegisterRelayRequest → Empty
	TypeOpenSession   Type = 4  // node→hub: OpenSessionRequest → OpenSessionResponse
	TypeIncoming      Type = 5  // hub→node push: Incoming
	TypeCreateTicket  Type = 6  // node→hub (enroller): CreateTicketRequest → CreateTicketResponse
	TypePing          Type = 7  // either way: Ping → Ping
	TypeRevoked       Type = 8  // hub→node push: the member was revoked; the hub closes next
	TypeLeave         Type = 9  // node→hub: revoke my own membership (uninstall --revoke) → Empty
	TypeCommand       Type = 10 // hub→node push: CommandPush (a vendor-signed command)
	TypeCommandAck    Type = 11 // node→hub: CommandAck → Empty
	TypeNodeState     Type = 12 // node→hub: NodeState → Empty
	TypeReleaseCheck  Type = 13 // node→hub: ReleaseCheck → ReleaseManifest
	TypeReleaseFetch  Type = 14 // node→hub: ReleaseFetch → ReleaseChunk
	TypeUpdateResult  Type = 15 // node→hub: UpdateResult → Empty
	// Added in message set 2.
	TypeWelcome          Type = 16 // relay→node push, first message: Welcome, or Err set (refused)
	TypeCredential       Type = 17 // node→relay: CredentialUpdate → Empty
	TypeRevocations      Type = 18 // authority→relay: Revocations → Empty
	TypeAuthoritySession Type = 19 // relay→authority push: AuthoritySession
	TypeLiveStatus       Type = 20 // authority→relay: Empty → LiveStatus
	TypePortalCheck      Type = 21 // node→relay: PortalCheck → PortalCheckResult
	TypeResponse         Type = 99 // an answer to a request (same ID)
)

// Msg is the frame of every control message. CBOR keys 1-4.
type Msg struct {
	Type Type            `cbor:"1,keyasint"`
	ID   uint64          `cbor:"2,keyasint,omitempty"`
	Err  *Error          `cbor:"3,keyasint,omitempty"`
	Body cbor.RawMessage `cbor:"4,keyasint,omitempty"`
}

// Error codes carried in Error.Code. They are stable; the message is for people.
const (
	ErrCodeTicketUnknown   = "ticket-unknown"
	ErrCodeTicketUsedUp    = "ticket-used-up"
	ErrCodeTicketExpired   = "ticket-expired"
	ErrCodeRelayRefused    = "relay-refused"
	ErrCodeRelayTaken      = "relay-taken"
	ErrCodeRelayUnknown    = "relay-unknown"
	ErrCodeNotMember       = "not-member"
	ErrCodeRevoked         = "revoked"
	ErrCodeForbidden       = "forbidden"
	ErrCodeBadRequest      = "bad-request"
	ErrCodeUnsupported     = "unsupported"
	ErrCodeInternal        = "internal"
	ErrCodeAlreadyEnrolled = "already-enrolled"
	ErrCodeBadCredential   = "bad-credential"     // not signed by the project's authority, or not this node's
	ErrCodeCredentialOld   = "credential-expired" // refresh it with the authority, then connect again
	ErrCodeOutsideScope    = "outside-scope"      // an enroller asked for more than its ticket lets it grant
	ErrCodeNoAuthority     = "no-authority"       // the authority is not connected to the relay
	ErrCodeSlowDown        = "slow-down"          // too many requests of this kind: wait RetryAfterMS, then ask again
	// ErrCodeRelayUnhealthy: the relay's owners are connected, but none
	// can take the session now (each one paused, draining, its target
	// for the outlet down, or avoided by the asker); the message says
	// why, owner by owner.
	ErrCodeRelayUnhealthy = "relay-unhealthy"
)

// Error is a refusal from the other side.
type Error struct {
	Code    string `cbor:"1,keyasint"`
	Message string `cbor:"2,keyasint"`
	// RetryAfterMS, with ErrCodeSlowDown, is how long to wait.
	RetryAfterMS int64 `cbor:"3,keyasint,omitempty"`
}

// RetryAfter is how long a slow-down asks to wait (0 for other errors).
func (e *Error) RetryAfter() time.Duration {
	if e.Code != ErrCodeSlowDown {
		return 0
	}
	return time.Duration(e.RetryAfterMS) * time.Millisecond
}

// SlowDown is the refusal of a request that came too soon after others.
func SlowDown(what string, wait time.Duration) *Error {
	// Rounded up: a node that waits exactly as long finds a token.
	ms := max((wait+time.Millisecond-1)/time.Millisecond, 1)
	return &Error{Code: ErrCodeSlowDown, Message: fmt.Sprintf("slow down: too many %s requests; ask again in %s", what, ms*time.Millisecond),
		RetryAfterMS: int64(ms)}
}

func (e *Error) Error() string { return e.Message }

// Encode builds a Msg with body v.
func Encode(t Type, id uint64, v any) ([]byte, error) {
	var body []byte
	if v != nil {
		var err error
		if body, err = wire.Marshal(v); err != nil {
			return nil, fmt.Errorf("encode %d: %w", t, err)
		}
	}
	return wire.Marshal(Msg{Type: t, ID: id, Body: body})
}

// EncodeMsg encodes a frame as it is (a push carrying Err, for example).
func EncodeMsg(m Msg) ([]byte, error) { return wire.Marshal(m) }

// EncodeError builds an error answer to request id.
func EncodeError(id uint64, e *Error) ([]byte, error) {
	return wire.Marshal(Msg{Type: TypeResponse, ID: id, Err: e})
}

// Decode parses a Msg frame.
func Decode(data []byte) (Msg, error) {
	var m Msg
	if err := wire.Unmarshal(data, &m); err != nil {
		return Msg{}, fmt.Errorf("control message: %w", err)
	}
	return m, nil
}

// DecodeBody parses a Msg body into v.
func DecodeBody(m Msg, v any) error {
	if len(m.Body) == 0 {
		return fmt.Errorf("control message %d: empty body", m.Type)
	}
	if err := wire.Unmarshal(m.Body, v); err != nil {
		return fmt.Errorf("control message %d: %w", m.Type, err)
	}
	return nil
}

// ServerHello is the hub's Noise message-2 payload on a control channel.
type ServerHello struct {
	Version  int    `cbor:"1,keyasint"` // wire.ProtocolVersion
	Project  string `cbor:"2,keyasint"`
	HubBuild string `cbor:"3,keyasint,omitempty"`
	TimeUnix int64  `cbor:"4,keyasint"` // hub clock, for skew diagnosis
}

// ClientHello is the node's Noise message-3 payload on a control channel.
type ClientHello struct {
	Version  int    `cbor:"1,keyasint"`
	Build    string `cbor:"2,keyasint,omitempty"` // agent version
	Platform string `cbor:"3,keyasint,omitempty"` // GOOS/GOARCH
	// Credential is the node's credential, or the authority's statement
	// of its own key (signed.ContextAuthority). The relay admits nobody
	// without one.
	Credential []byte `cbor:"4,keyasint,omitempty"`
}

// Welcome is the relay's first message on a control channel once it has
// checked the hello's credential.
type Welcome struct {
	Role string `cbor:"1,keyasint"` // "member" or "authority"
}

// Roles in Welcome.
const (
	RoleMember    = "member"
	RoleAuthority = "authority"
)

// RevokedPush tells a node it was revoked (TypeRevoked); the relay then
// closes its connection.
type RevokedPush struct {
	At int64 `cbor:"1,keyasint,omitempty"` // when the authority revoked it
}

// CredentialUpdate hands the relay a node's refreshed credential.
type CredentialUpdate struct {
	Credential []byte `cbor:"1,keyasint"`
}

// Revocations carries authority-signed revocation notices.
type Revocations struct {
	Notices [][]byte `cbor:"1,keyasint"`
}

// AuthoritySession tells the authority a node is waiting on an authority
// connection; the authority dials a data connection with the token.
type AuthoritySession struct {
	Token []byte `cbor:"1,keyasint"`
	Offer []byte `cbor:"2,keyasint"` // the node's preface offer (min, max): both ends put it in the Noise prologue
}

// PortalCheck asks the relay, when an admin creates an inlet or an
// outlet, whether what it names exists now: the relay (for an inlet) and
// the attribute names of its allow policy. The answer is advice for a
// warning, never a decision: things may come later.
type PortalCheck struct {
	Relay      string   `cbor:"1,keyasint,omitempty"`
	Attributes []string `cbor:"2,keyasint,omitempty"`
}

// PortalCheckResult answers PortalCheck. RelayKnown: some node owns the
// relay name (it may be offline); RelayUp: its owner is connected now.
// Attributes: those of the names asked that some connected member's
// credential has (names only, never values).
type PortalCheckResult struct {
	RelayKnown bool     `cbor:"1,keyasint,omitempty"`
	RelayUp    bool     `cbor:"2,keyasint,omitempty"`
	Attributes []string `cbor:"3,keyasint,omitempty"`
}

// MaxPortalCheckNames bounds the names one PortalCheck may ask about.
const MaxPortalCheckNames = 64

// LiveStatus is what the relay knows of its connected nodes.
type LiveStatus struct {
	Nodes []NodeLive `cbor:"1,keyasint"`
}

// NodeLive is one node as the relay sees it.
type NodeLive struct {
	ID         string `cbor:"1,keyasint"`
	Connected  bool   `cbor:"2,keyasint,omitempty"`
	Relay      string `cbor:"3,keyasint,omitempty"` // registered now
	Paused     bool   `cbor:"4,keyasint,omitempty"`
	Version    string `cbor:"5,keyasint,omitempty"`
	Platform   string `cbor:"6,keyasint,omitempty"`
	LastSeen   int64  `cbor:"7,keyasint,omitempty"`
	LastUpdate string `cbor:"8,keyasint,omitempty"`
	// Replica: the node serves Relay as one of its replicas.
	Replica bool `cbor:"9,keyasint,omitempty"`
	// Draining and Down are the node's last NodeState.
	Draining bool     `cbor:"10,keyasint,omitempty"`
	Down     []string `cbor:"11,keyasint,omitempty"`
}

// RedeemRequest asks the hub to admit this node (identified by its Noise
// static key) with a ticket's secret.
type RedeemRequest struct {
	Secret []byte `cbor:"1,keyasint"`
	Relay  string `cbor:"2,keyasint,omitempty"` // the relay name the node will register; checked before the ticket is used
	DryRun bool   `cbor:"3,keyasint,omitempty"` // check only; consumes nothing (install preflight)
}

// CredentialResponse carries a fresh credential (a signed.Envelope).
type CredentialResponse struct {
	Credential []byte `cbor:"1,keyasint"`
}

// RefreshRequest asks for a fresh credential.
type RefreshRequest struct{}

// RegisterRelayRequest registers the node's relay name.
type RegisterRelayRequest struct {
	Name string `cbor:"1,keyasint"`
}

// Empty is an empty answer.
type Empty struct{}

// OpenSessionRequest asks the hub for a session to the node behind a relay.
type OpenSessionRequest struct {
	Relay string `cbor:"1,keyasint"`
	// Outlet is the outlet of the portal the channel is opened for (a
	// hint: among a relay's replicas, the hub prefers one that does not
	// report that outlet's target down).
	Outlet string `cbor:"2,keyasint,omitempty"`
	// Avoid lists owners the asker does not want (it has a channel to
	// them already, or they refused the outlet lately).
	Avoid []string `cbor:"3,keyasint,omitempty"`
}

// MaxAvoid bounds OpenSessionRequest.Avoid (a relay has few replicas).
const MaxAvoid = 32

// OpenSessionResponse names the session token and the peer that owns the
// relay. Both nodes dial a data connection with the token.
type OpenSessionResponse struct {
	Token []byte `cbor:"1,keyasint"`
	Peer  string `cbor:"2,keyasint"` // identifier of the relay's node
	// Healthy is how many of the relay's owners could take the outlet now
	// (the one picked included; 0 from a hub that predates replicas).
	Healthy int `cbor:"3,keyasint,omitempty"`
}

// Incoming tells a relay's node that a peer wants a session.
type Incoming struct {
	Token []byte `cbor:"1,keyasint"`
	Relay string `cbor:"2,keyasint"`
	From  string `cbor:"3,keyasint"` // identifier of the initiating node
}

// CreateTicketRequest asks the hub (as an enroller) for a ticket.
type CreateTicketRequest struct {
	Attributes map[string]string `cbor:"1,keyasint,omitempty"`
	Relay      string            `cbor:"2,keyasint,omitempty"`
	ExpiresIn  int64             `cbor:"3,keyasint"` // seconds
	Uses       int               `cbor:"4,keyasint"`
	Replica    bool              `cbor:"5,keyasint,omitempty"`
}

// CreateTicketResponse carries the ticket text.
type CreateTicketResponse struct {
	Ticket string `cbor:"1,keyasint"`
}

// Ping is a keepalive; the answer is a Ping too.
type Ping struct {
	TimeUnix int64 `cbor:"1,keyasint"`
}

// ChannelHello is each node's handshake payload on a channel between two
// nodes: the inlet node's in Noise message 2, the outlet node's in
// message 3.
type ChannelHello struct {
	Credential []byte `cbor:"1,keyasint"`
}

// StreamOpen is the open header of a stream in a channel: a portal to an
// outlet, or (Kind "credential") a refreshed credential.
type StreamOpen struct {
	Outlet     string `cbor:"1,keyasint,omitempty"`
	Kind       string `cbor:"2,keyasint,omitempty"`
	Credential []byte `cbor:"3,keyasint,omitempty"`
}

// Portal refusal codes: a refused stream carries one to the inlet node.
const (
	PortalOK            = "ok"
	PortalDenied        = "denied"
	PortalUnknownOutlet = "unknown-outlet"
	PortalTargetRefused = "target-refused"
	PortalTargetTimeout = "target-timeout"
	PortalPaused        = "paused"
	PortalBadCredential = "bad-credential"
	// PortalSlowDown: the peer opens portals faster than this node's
	// per-peer limits allow, or has too many open.
	PortalSlowDown = "slow-down"
	// PortalDraining: the node is draining for maintenance: open portals
	// finish, new ones go elsewhere.
	PortalDraining = "draining"
)

// CommandPush carries a signed command (agent/command) to its node.
type CommandPush struct {
	Seq  uint64 `cbor:"1,keyasint"` // as queued; the signed bytes are authoritative
	Data []byte `cbor:"2,keyasint"`
}

// CommandAck tells the hub what the node did with a command.
type CommandAck struct {
	Seq     uint64 `cbor:"1,keyasint"`
	Applied bool   `cbor:"2,keyasint"`
	Reason  string `cbor:"3,keyasint,omitempty"`
}

// NodeState reports the node's state to the hub, whenever it changes
// and on every connection: the customer's pause, a drain, and the
// outlets whose target the node cannot reach (its health checks).
type NodeState struct {
	Paused   bool     `cbor:"1,keyasint"`
	Draining bool     `cbor:"2,keyasint,omitempty"`
	Down     []string `cbor:"3,keyasint,omitempty"` // outlet names, sorted
}

// MaxDown bounds NodeState.Down as the hub keeps it.
const MaxDown = 256

// ReleaseCheck asks for the newest release of a channel, or one version.
type ReleaseCheck struct {
	Channel string `cbor:"1,keyasint"`
	Version string `cbor:"2,keyasint,omitempty"`
}

// ReleaseManifest carries a signed manifest (wire/release).
type ReleaseManifest struct {
	Manifest []byte `cbor:"1,keyasint"`
}

// ReleaseFetch asks for a piece of a release binary.
type ReleaseFetch struct {
	Channel  string `cbor:"1,keyasint"`
	Version  string `cbor:"2,keyasint"`
	Platform string `cbor:"3,keyasint"`
	Offset   int64  `cbor:"4,keyasint"`
}

// MaxChunk is the largest ReleaseChunk the hub sends.
const MaxChunk = 512 << 10

// ReleaseChunk is a piece of a binary; an empty Data means the end.
type ReleaseChunk struct {
	Data []byte `cbor:"1,keyasint"`
}

// UpdateResult reports how an update went.
type UpdateResult struct {
	From   string `cbor:"1,keyasint"`
	To     string `cbor:"2,keyasint"`
	OK     bool   `cbor:"3,keyasint"`
	Reason string `cbor:"4,keyasint,omitempty"`
}
