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
)

// TicketRecord is what the store keeps of a ticket: never the secret.
type TicketRecord struct {
	ID         string            `cbor:"1,keyasint"`
	Hash       [32]byte          `cbor:"2,keyasint"`
	Attributes map[string]string `cbor:"3,keyasint,omitempty"`
	Relay      string            `cbor:"4,keyasint,omitempty"`
	Enroller   bool              `cbor:"5,keyasint,omitempty"`
	CreatedAt  int64             `cbor:"6,keyasint"`
	ExpiresAt  int64             `cbor:"7,keyasint"`
	UsesLeft   int               `cbor:"8,keyasint"`
	CreatedBy  string            `cbor:"9,keyasint,omitempty"` // "admin" or an enroller's identifier
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
	// GetMember returns the member, or ErrNotFound.
	GetMember(ctx context.Context, id string) (Member, error)
	// UpdateMember applies fn to the stored member atomically.
	UpdateMember(ctx context.Context, id string, fn func(*Member) error) (Member, error)
	ListMembers(ctx context.Context) ([]Member, error)
}

// Authority mints tickets and credentials for one project.
type Authority struct {
	Project       string
	Vendor        string
	Hubs          []string // addresses nodes dial, written into tickets
	HubKey        key.NodePublic
	Signer        key.SigningPrivate // authority key (non-zero)
	CommandKey    key.SigningPublic
	ReleaseKey    key.SigningPublic
	Store         Store
	CredentialTTL time.Duration    // 0 means DefaultCredentialTTL
	Now           func() time.Time // nil means time.Now; for tests
}

// DefaultCredentialTTL is how long a credential is valid. Nodes refresh at
// half-life, so a hub outage shorter than half of this is invisible.
const DefaultCredentialTTL = 12 * time.Hour

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
	Enroller   bool
	ExpiresIn  time.Duration
	Uses       int
	CreatedBy  string // "admin" or the enroller's identifier
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
		TicketID:   TicketID(secret),
		Attributes: o.Attributes,
		Relay:      o.Relay,
		Enroller:   o.Enroller,
		IssuedAt:   now.Unix(),
		ExpiresAt:  now.Add(o.ExpiresIn).Unix(),
		Uses:       o.Uses,
		Project:    a.Project,
	}
	grant, err := signed.Sign(a.Signer, signed.ContextGrant, g)
	if err != nil {
		return "", Grant{}, fmt.Errorf("create ticket: %w", err)
	}
	t := Ticket{
		Vendor:       a.Vendor,
		Hubs:         a.Hubs,
		HubKey:       a.HubKey.Raw32(),
		AuthorityKey: a.Signer.Public().Raw32(),
		CommandKey:   a.CommandKey.Raw32(),
		ReleaseKey:   a.ReleaseKey.Raw32(),
		Project:      a.Project,
		Secret:       secret,
		Grant:        grant,
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
		Enroller:   o.Enroller,
		CreatedAt:  g.IssuedAt,
		ExpiresAt:  g.ExpiresAt,
		UsesLeft:   o.Uses,
		CreatedBy:  o.CreatedBy,
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

// checkTicket refuses an expired or used-up ticket and a relay name the
// ticket does not grant.
func (a *Authority) checkTicket(t TicketRecord, relay string) error {
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
	if m, err := a.Store.GetMember(ctx, id); err == nil && !m.Revoked {
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
		return Member{ID: id, Attributes: t.Attributes, Relay: t.Relay, Enroller: t.Enroller}, nil, nil
	}
	m, err := a.Store.RedeemTicket(ctx, hash, func(t TicketRecord) (Member, error) {
		if err := a.checkTicket(t, o.Relay); err != nil {
			return Member{}, err
		}
		return Member{
			ID:         id,
			NodeKey:    o.Node.Raw32(),
			Attributes: t.Attributes,
			Relay:      t.Relay,
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
		return Member{}, ErrRevoked
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
		Enroller:   m.Enroller,
		IssuedAt:   now.Unix(),
		ExpiresAt:  now.Add(ttl).Unix(),
	}
	b, err := signed.Sign(a.Signer, signed.ContextCredential, c)
	if err != nil {
		return nil, fmt.Errorf("issue credential: %w", err)
	}
	return b, nil
}

// Revoke marks a member revoked. It is idempotent.
func (a *Authority) Revoke(ctx context.Context, id string) (Member, error) {
	m, err := a.Store.UpdateMember(ctx, id, func(m *Member) error {
		if !m.Revoked {
			m.Revoked = true
			m.RevokedAt = a.now().Unix()
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return Member{}, fmt.Errorf("no member %q", id)
	}
	return m, err
}
