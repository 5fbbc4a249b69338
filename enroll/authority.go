// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package enroll

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/edgeportal/connect/policy"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/signed"
)

// Redemption errors. Each names why a ticket was refused; none of them
// changes any state.
var (
	ErrTicketUnknown = errors.New("ticket is not known to this hub (wrong project, or never issued)")
	ErrTicketUsedUp  = errors.New("ticket is used up (its usage count is reached)")
	ErrTicketExpired = errors.New("ticket has expired")
	ErrRelayRefused  = errors.New("relay name refused")
	ErrNotMember     = errors.New("node is not a member of this project")
	ErrRevoked       = errors.New("node's membership was revoked")
	ErrNotFound      = errors.New("not found")
	ErrNotEnroller   = errors.New("this node is not an enroller: its ticket did not grant the enroller role")
)

// RevokedError says when a member was revoked. It wraps ErrRevoked; a
// revoked identity never becomes a member again.
type RevokedError struct {
	ID string
	At time.Time
}

func (e *RevokedError) Error() string {
	return fmt.Sprintf("node %s's membership was revoked at %s; it needs a new identity and ticket", e.ID, e.At.UTC().Format(time.RFC3339))
}

func (e *RevokedError) Unwrap() error { return ErrRevoked }

// TicketRecord is what the store keeps of a ticket: never the secret.
type TicketRecord struct {
	ID         string            `cbor:"1,keyasint" json:"id"`
	Hash       [32]byte          `cbor:"2,keyasint" json:"-"` // of the secret; not shown
	Attributes map[string]string `cbor:"3,keyasint,omitempty" json:"attributes,omitempty"`
	Relay      string            `cbor:"4,keyasint,omitempty" json:"relay,omitempty"`
	Enroller   bool              `cbor:"5,keyasint,omitempty" json:"enroller,omitempty"`
	CreatedAt  int64             `cbor:"6,keyasint" json:"created_at"`
	ExpiresAt  int64             `cbor:"7,keyasint" json:"expires_at"`
	UsesLeft   int               `cbor:"8,keyasint" json:"uses_left"`
	CreatedBy  string            `cbor:"9,keyasint,omitempty" json:"created_by,omitempty"` // "admin" or an enroller's identifier
	Scope      *Scope            `cbor:"10,keyasint,omitempty" json:"scope,omitempty"`
	Revoked    bool              `cbor:"11,keyasint,omitempty" json:"revoked,omitempty"` // withdrawn by the vendor (leaked)
	Replica    bool              `cbor:"12,keyasint,omitempty" json:"replica,omitempty"` // the node serves Relay as a replica
}

// Member is an enrolled node.
type Member struct {
	ID         string            `cbor:"1,keyasint" json:"identifier"`
	NodeKey    [32]byte          `cbor:"2,keyasint" json:"-"`
	Attributes map[string]string `cbor:"3,keyasint,omitempty" json:"attributes"`
	Relay      string            `cbor:"4,keyasint,omitempty" json:"relay"`
	Enroller   bool              `cbor:"5,keyasint,omitempty" json:"enroller"`
	EnrolledAt int64             `cbor:"6,keyasint" json:"enrolled_at"`
	LastSeen   int64             `cbor:"7,keyasint,omitempty" json:"last_seen"`
	Revoked    bool              `cbor:"8,keyasint,omitempty" json:"revoked"`
	RevokedAt  int64             `cbor:"9,keyasint,omitempty" json:"revoked_at,omitempty"`
	TicketID   string            `cbor:"10,keyasint,omitempty" json:"ticket"`
	Version    string            `cbor:"11,keyasint,omitempty" json:"version,omitempty"`
	Platform   string            `cbor:"12,keyasint,omitempty" json:"platform,omitempty"`
	LastUpdate string            `cbor:"13,keyasint,omitempty" json:"last_update,omitempty"`
	Scope      *Scope            `cbor:"14,keyasint,omitempty" json:"scope,omitempty"`
	Replica    bool              `cbor:"15,keyasint,omitempty" json:"replica,omitempty"` // serves Relay as a replica
}

// Store is the state the authority needs. Implementations must make
// RedeemTicket atomic: two concurrent redemptions of a one-time ticket
// admit exactly one node.
type Store interface {
	PutTicket(ctx context.Context, t TicketRecord) error
	// RedeemTicket looks the ticket up by hash and, in one transaction,
	// calls admit with it (admit returns the member to store, or an error
	// that aborts without change), decrements its uses and stores the
	// member. It returns ErrTicketUnknown when no such ticket exists; admit
	// is responsible for the expiry and used-up checks.
	RedeemTicket(ctx context.Context, hash [32]byte, admit func(TicketRecord) (Member, error)) (Member, error)
	// GetTicket returns the ticket with that hash, or ErrTicketUnknown.
	GetTicket(ctx context.Context, hash [32]byte) (TicketRecord, error)
	// UpdateTicket applies fn to the stored ticket atomically.
	UpdateTicket(ctx context.Context, hash [32]byte, fn func(*TicketRecord) error) (TicketRecord, error)
	ListTickets(ctx context.Context) ([]TicketRecord, error)
	// GetMember returns the member, or ErrNotFound.
	GetMember(ctx context.Context, id string) (Member, error)
	// UpdateMember applies fn to the stored member atomically.
	UpdateMember(ctx context.Context, id string, fn func(*Member) error) (Member, error)
	ListMembers(ctx context.Context) ([]Member, error)
}

// Authority mints tickets and credentials for one project. It is the only
// holder of the signing key.
type Authority struct {
	Project    string
	Vendor     string
	Hubs       []string           // relay addresses nodes dial, written into tickets
	HubKey     key.NodePublic     // the relay's Noise key, written into tickets
	Signer     key.SigningPrivate // authority key (non-zero)
	NoiseKey   key.NodePublic     // the authority's own Noise key, written into tickets
	CommandKey key.SigningPublic  // zero: the project signs no commands
	ReleaseKey key.SigningPublic  // zero: the project publishes no releases
	Store      Store
	// CredentialTTL is how long a credential is valid; 0 means
	// DefaultCredentialTTL. A relay that ignored a revocation could admit
	// the revoked node only until its credential expires.
	CredentialTTL time.Duration
	Now           func() time.Time // nil means time.Now; for tests
}

// DefaultCredentialTTL is how long a credential is valid. Nodes refresh at
// half-life, over their channel to the authority.
const DefaultCredentialTTL = time.Hour

// Ticket limits.
const (
	MaxTicketUses     = 10000
	MaxTicketLifetime = 366 * 24 * time.Hour
	MaxAttributes     = 64
	maxAttrValueLen   = 256
)

var relayNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidRelayName reports whether s can be a relay name.
func ValidRelayName(s string) bool { return relayNameRE.MatchString(s) }

func (a *Authority) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// TicketOptions describe a ticket to create.
type TicketOptions struct {
	Attributes map[string]string
	Relay      string
	// Replica makes the node a replica of Relay: one of several nodes
	// serving the name on purpose. Needs Relay.
	Replica   bool
	Enroller  bool
	Scope     *Scope // what an enroller ticket lets its holder grant; required with Enroller
	ExpiresIn time.Duration
	Uses      int
	CreatedBy string // "admin" or the enroller's identifier
}

// Validate checks the options and returns a one-line error naming the
// first problem.
func (o TicketOptions) Validate() error {
	if o.Uses < 1 {
		return fmt.Errorf("usage count must be at least 1, got %d", o.Uses)
	}
	if o.Uses > MaxTicketUses {
		return fmt.Errorf("usage count must be at most %d, got %d", MaxTicketUses, o.Uses)
	}
	if o.ExpiresIn <= 0 {
		return fmt.Errorf("expiry must be positive, got %s", o.ExpiresIn)
	}
	if o.ExpiresIn > MaxTicketLifetime {
		return fmt.Errorf("expiry must be at most %s, got %s", MaxTicketLifetime, o.ExpiresIn)
	}
	if len(o.Attributes) > MaxAttributes {
		return fmt.Errorf("at most %d attributes, got %d", MaxAttributes, len(o.Attributes))
	}
	for k, v := range o.Attributes {
		if err := ValidateAttribute(k, v); err != nil {
			return err
		}
	}
	if o.Relay != "" && !ValidRelayName(o.Relay) {
		return fmt.Errorf("relay name %q is invalid: use letters, digits, '.', '_' and '-', at most 64", o.Relay)
	}
	if o.Replica && o.Relay == "" {
		return errors.New("a replica ticket needs a relay name: a replica serves a relay beside the name's other replicas")
	}
	if o.Enroller {
		if o.Scope == nil {
			return errors.New("an enroller ticket needs a scope: which attributes and relay names its holder may grant")
		}
		if err := o.Scope.Validate(); err != nil {
			return err
		}
	} else if o.Scope != nil {
		return errors.New("an enroller scope is only for an enroller ticket")
	}
	return nil
}

// ValidateAttribute checks one attribute name and value.
func ValidateAttribute(name, value string) error {
	if !policy.ValidAttributeName(name) {
		return fmt.Errorf("attribute name %q is invalid: use letters, digits, '.', '_', ':' and '-'", name)
	}
	if name == "identifier" {
		return fmt.Errorf("attribute name %q is reserved", name)
	}
	if len(value) > maxAttrValueLen {
		return fmt.Errorf("attribute %q: value longer than %d bytes", name, maxAttrValueLen)
	}
	return nil
}

// CreateTicket stores a new ticket and returns its text.
func (a *Authority) CreateTicket(ctx context.Context, o TicketOptions) (string, Grant, error) {
	if err := o.Validate(); err != nil {
		return "", Grant{}, fmt.Errorf("create ticket: %w", err)
	}
	now := a.now()
	secret := newSecret()
	g := Grant{
		TicketID:          TicketID(secret),
		Attributes:        o.Attributes,
		Relay:             o.Relay,
		Replica:           o.Replica,
		Enroller:          o.Enroller,
		Scope:             o.Scope,
		IssuedAt:          now.Unix(),
		ExpiresAt:         now.Add(o.ExpiresIn).Unix(),
		Uses:              o.Uses,
		Project:           a.Project,
		Vendor:            a.Vendor,
		Hubs:              a.Hubs,
		HubKey:            a.HubKey.Raw32(),
		AuthorityNoiseKey: a.NoiseKey.Raw32(),
		CommandKey:        a.CommandKey.Raw32(),
		ReleaseKey:        a.ReleaseKey.Raw32(),
	}
	grant, err := signed.Sign(a.Signer, signed.ContextGrant, g)
	if err != nil {
		return "", Grant{}, fmt.Errorf("create ticket: %w", err)
	}
	t := Ticket{
		Vendor:            g.Vendor,
		Hubs:              g.Hubs,
		HubKey:            g.HubKey,
		AuthorityKey:      a.Signer.Public().Raw32(),
		AuthorityNoiseKey: g.AuthorityNoiseKey,
		CommandKey:        g.CommandKey,
		ReleaseKey:        g.ReleaseKey,
		Project:           a.Project,
		Secret:            secret,
		Grant:             grant,
	}
	text, err := t.Encode()
	if err != nil {
		return "", Grant{}, err
	}
	rec := TicketRecord{
		ID:         g.TicketID,
		Hash:       SecretHash(secret),
		Attributes: o.Attributes,
		Relay:      o.Relay,
		Replica:    o.Replica,
		Enroller:   o.Enroller,
		CreatedAt:  g.IssuedAt,
		ExpiresAt:  g.ExpiresAt,
		UsesLeft:   o.Uses,
		CreatedBy:  o.CreatedBy,
		Scope:      o.Scope,
	}
	if err := a.Store.PutTicket(ctx, rec); err != nil {
		return "", Grant{}, fmt.Errorf("create ticket: store: %w", err)
	}
	return text, g, nil
}

// RedeemOptions describe a redemption.
type RedeemOptions struct {
	Node     key.NodePublic // proven by the Noise handshake
	Secret   []byte
	Relay    string // the relay name the node will register; "" = the ticket's
	DryRun   bool   // check everything, consume nothing
	Version  string
	Platform string
}

// CreateTicketAs creates a ticket for an enroller member, inside the scope
// its own ticket gave it. A refusal names the part outside it.
func (a *Authority) CreateTicketAs(ctx context.Context, node key.NodePublic, o TicketOptions) (string, Grant, error) {
	m, err := a.Member(ctx, node)
	if err != nil {
		return "", Grant{}, err
	}
	if !m.Enroller {
		return "", Grant{}, ErrNotEnroller
	}
	if err := o.Validate(); err != nil {
		return "", Grant{}, fmt.Errorf("create ticket: %w", err)
	}
	if err := m.Scope.Check(o); err != nil {
		return "", Grant{}, err
	}
	o.CreatedBy = m.ID
	return a.CreateTicket(ctx, o)
}

// checkTicket refuses an expired, used-up or withdrawn ticket and a relay
// name the ticket does not grant.
func (a *Authority) checkTicket(t TicketRecord, relay string) error {
	if t.Revoked {
		return fmt.Errorf("%w: the vendor withdrew it", ErrTicketUsedUp)
	}
	if a.now().Unix() >= t.ExpiresAt {
		return fmt.Errorf("%w (at %s)", ErrTicketExpired, time.Unix(t.ExpiresAt, 0).UTC().Format(time.RFC3339))
	}
	if t.UsesLeft <= 0 {
		return ErrTicketUsedUp
	}
	if relay != "" && relay != t.Relay {
		if t.Relay == "" {
			return fmt.Errorf("%w: %q: the ticket does not allow registering a relay", ErrRelayRefused, relay)
		}
		return fmt.Errorf("%w: %q: the ticket allows only %q", ErrRelayRefused, relay, t.Relay)
	}
	return nil
}

// Redeem admits the node with the ticket secret and returns the member and
// a fresh credential. It changes nothing when it fails or when DryRun.
func (a *Authority) Redeem(ctx context.Context, o RedeemOptions) (Member, []byte, error) {
	if len(o.Secret) != 32 {
		return Member{}, nil, ErrTicketUnknown
	}
	id := string(o.Node.ID())
	if m, err := a.Store.GetMember(ctx, id); err == nil && m.Revoked {
		// Sticky: a revoked identity never comes back, whatever ticket
		// it holds.
		return Member{}, nil, &RevokedError{ID: id, At: time.Unix(m.RevokedAt, 0)}
	} else if err == nil {
		if m.TicketID == TicketID(o.Secret) && m.nodeKey().Equal(o.Node) {
			// The same node retrying after its answer was lost: hand
			// out a credential again, consume nothing.
			if o.DryRun {
				return m, nil, nil
			}
			cred, err := a.Issue(m)
			return m, cred, err
		}
		return Member{}, nil, fmt.Errorf("node %s is already a member; it needs no ticket", id)
	}
	hash := SecretHash(o.Secret)
	if o.DryRun {
		t, err := a.Store.GetTicket(ctx, hash)
		if err != nil {
			return Member{}, nil, err
		}
		if err := a.checkTicket(t, o.Relay); err != nil {
			return Member{}, nil, err
		}
		return Member{ID: id, Attributes: t.Attributes, Relay: t.Relay, Replica: t.Replica, Enroller: t.Enroller, Scope: t.Scope}, nil, nil
	}
	m, err := a.Store.RedeemTicket(ctx, hash, func(t TicketRecord) (Member, error) {
		if err := a.checkTicket(t, o.Relay); err != nil {
			return Member{}, err
		}
		return Member{
			Scope:      t.Scope,
			ID:         id,
			NodeKey:    o.Node.Raw32(),
			Attributes: t.Attributes,
			Relay:      t.Relay,
			Replica:    t.Replica,
			Enroller:   t.Enroller,
			EnrolledAt: a.now().Unix(),
			LastSeen:   a.now().Unix(),
			TicketID:   t.ID,
			Version:    o.Version,
			Platform:   o.Platform,
		}, nil
	})
	if err != nil {
		return Member{}, nil, err
	}
	cred, err := a.Issue(m)
	if err != nil {
		return Member{}, nil, err
	}
	return m, cred, nil
}

// Member returns the current, unrevoked member for a node key.
func (a *Authority) Member(ctx context.Context, node key.NodePublic) (Member, error) {
	m, err := a.Store.GetMember(ctx, string(node.ID()))
	if errors.Is(err, ErrNotFound) {
		return Member{}, ErrNotMember
	}
	if err != nil {
		return Member{}, err
	}
	if m.Revoked {
		return Member{}, &RevokedError{ID: m.ID, At: time.Unix(m.RevokedAt, 0)}
	}
	if !m.nodeKey().Equal(node) {
		return Member{}, ErrNotMember
	}
	return m, nil
}

func (m Member) nodeKey() key.NodePublic {
	k, _ := key.NodePublicFromRaw32(m.NodeKey[:])
	return k
}

// Refresh issues a fresh credential to a current member.
func (a *Authority) Refresh(ctx context.Context, node key.NodePublic) ([]byte, error) {
	m, err := a.Member(ctx, node)
	if err != nil {
		return nil, err
	}
	return a.Issue(m)
}

// Issue signs a credential for m.
func (a *Authority) Issue(m Member) ([]byte, error) {
	ttl := a.CredentialTTL
	if ttl <= 0 {
		ttl = DefaultCredentialTTL
	}
	now := a.now()
	c := Credential{
		Project:    a.Project,
		NodeKey:    m.NodeKey,
		ID:         m.ID,
		Attributes: m.Attributes,
		Relay:      m.Relay,
		Replica:    m.Replica,
		Enroller:   m.Enroller,
		Scope:      m.Scope,
		IssuedAt:   now.Unix(),
		ExpiresAt:  now.Add(ttl).Unix(),
	}
	b, err := signed.Sign(a.Signer, signed.ContextCredential, c)
	if err != nil {
		return nil, fmt.Errorf("issue credential: %w", err)
	}
	return b, nil
}

// Revoke marks a member revoked and returns the signed notice for the
// relay. It is idempotent; the first revocation time stays.
func (a *Authority) Revoke(ctx context.Context, id string) (Member, []byte, error) {
	m, err := a.Store.UpdateMember(ctx, id, func(m *Member) error {
		if !m.Revoked {
			m.Revoked = true
			m.RevokedAt = a.now().Unix()
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return Member{}, nil, fmt.Errorf("no member %q", id)
	}
	if err != nil {
		return Member{}, nil, err
	}
	notice, err := a.revocation(m)
	return m, notice, err
}

func (a *Authority) revocation(m Member) ([]byte, error) {
	return signed.Sign(a.Signer, signed.ContextRevocation, Revocation{Project: a.Project, ID: m.ID, NodeKey: m.NodeKey, RevokedAt: m.RevokedAt})
}

// Revocations returns a signed notice for every revoked member, for a
// relay that (re)connects.
func (a *Authority) Revocations(ctx context.Context) ([][]byte, error) {
	ms, err := a.Store.ListMembers(ctx)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, m := range ms {
		if !m.Revoked {
			continue
		}
		n, err := a.revocation(m)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// Statement returns a fresh statement of the authority's Noise key, for
// its control hello to the relay.
func (a *Authority) Statement() ([]byte, error) {
	now := a.now()
	return signed.Sign(a.Signer, signed.ContextAuthority, Statement{Project: a.Project, NoiseKey: a.NoiseKey.Raw32(),
		IssuedAt: now.Unix(), ExpiresAt: now.Add(StatementTTL).Unix()})
}

// RevokeTicket withdraws a ticket (one that leaked): it can no longer be
// redeemed. Members it already admitted stay.
func (a *Authority) RevokeTicket(ctx context.Context, id string) (TicketRecord, error) {
	ts, err := a.Store.ListTickets(ctx)
	if err != nil {
		return TicketRecord{}, err
	}
	for _, t := range ts {
		if t.ID == id {
			return a.Store.UpdateTicket(ctx, t.Hash, func(t *TicketRecord) error {
				t.Revoked = true
				return nil
			})
		}
	}
	return TicketRecord{}, fmt.Errorf("no ticket %q", id)
}
