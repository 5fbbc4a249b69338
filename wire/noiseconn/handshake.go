// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package noiseconn

import (
	"context"
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/flynn/noise"

	"github.com/edgeportal/connect/wire/key"
)

// Suite names, as Conn.Suite reports them (for status, logs and metrics).
// Each is also the exact Noise protocol name hashed into the handshake, so
// the two suites can never be confused with each other.
const (
	// SuiteHybrid is Noise XXpsk3 whose PSK is an ML-KEM-768 shared secret:
	// the session keys depend on both X25519 and ML-KEM-768.
	SuiteHybrid = "Noise_XXpsk3_25519+MLKEM768_AESGCM_SHA256"
	// SuiteClassical is plain Noise XX over X25519.
	SuiteClassical = "Noise_XX_25519_AESGCM_SHA256"
)

// Mode selects the handshake. The zero value is Hybrid.
type Mode uint8

const (
	// Hybrid runs SuiteHybrid: the initiator sends an ML-KEM-768
	// encapsulation key in message 1's payload, the responder its
	// ciphertext at the start of message 2's (encrypted) payload, and both
	// mix the shared secret in as the PSK of message 3. A recorder of the
	// traffic with a future quantum computer, who can break X25519, still
	// lacks the ML-KEM secret. It costs HybridOverhead bytes on the wire.
	Hybrid Mode = iota
	// Classical runs SuiteClassical. Kept for peers that predate Hybrid.
	Classical
)

// String returns the suite name of the mode.
func (m Mode) String() string {
	switch m {
	case Hybrid:
		return SuiteHybrid
	case Classical:
		return SuiteClassical
	}
	return fmt.Sprintf("noiseconn.Mode(%d)", uint8(m))
}

// Sizes of the hybrid handshake's additions.
const (
	// kemKeySize is an ML-KEM-768 encapsulation key (message 1's payload).
	kemKeySize = mlkem.EncapsulationKeySize768
	// kemCiphertextSize is an ML-KEM-768 ciphertext (message 2's payload
	// starts with it).
	kemCiphertextSize = mlkem.CiphertextSize768
	// HybridOverhead is how many more handshake bytes Hybrid sends than
	// Classical: the key, the ciphertext, and message 1's AEAD tag (a PSK
	// pattern encrypts message 1's payload).
	HybridOverhead = kemKeySize + kemCiphertextSize + tagLen
)

// Static is a node's static key prepared for handshakes: the X25519 key is
// parsed once, so each handshake pays one scalar multiplication per DH. It
// is the only private key this package keeps beyond a handshake, and only
// for as long as the caller keeps the Static. Build it once per node key
// and share it; it is safe for concurrent use.
type Static struct {
	sk   *ecdh.PrivateKey
	priv []byte // raw bytes handed to flynn/noise; never modified
	pub  []byte
	key  key.NodePublic
}

// NewStatic prepares k for handshakes.
func NewStatic(k key.NodePrivate) (*Static, error) {
	if k.IsZero() {
		return nil, errors.New("noiseconn: zero static key")
	}
	raw := k.Raw32()
	defer clear(raw[:])
	sk, err := ecdh.X25519().NewPrivateKey(raw[:])
	if err != nil {
		return nil, fmt.Errorf("noiseconn: static key: %w", err)
	}
	pub := sk.PublicKey().Bytes()
	nk, err := key.NodePublicFromRaw32(pub)
	if err != nil {
		return nil, err
	}
	return &Static{sk: sk, priv: sk.Bytes(), pub: pub, key: nk}, nil
}

// Public returns the public half of the static key.
func (s *Static) Public() key.NodePublic { return s.key }

// Config configures one handshake.
type Config struct {
	// Static is this node's key (NewStatic); required.
	Static *Static
	// Prologue binds the handshake to its context (protocol version,
	// session token); both sides must use the same bytes.
	Prologue []byte
	// Mode is Hybrid (the zero value) or Classical; both sides must agree.
	Mode Mode
	// MaxMessage bounds each handshake message read from the peer (0:
	// MaxFrame). A server that admits strangers keeps it to a few KiB, so
	// a connection that has proven nothing costs it little memory.
	MaxMessage int
}

// Test hooks (nil in production).
var (
	// testRandom returns the randomness source of one side's ephemeral
	// X25519 key and ML-KEM key pair.
	testRandom func(initiator bool) io.Reader
	// testEncapsulate replaces ML-KEM encapsulation (to derandomize it).
	testEncapsulate func(ek *mlkem.EncapsulationKey768) (secret, ciphertext []byte)
	// testPSK sees (and may change) the PSK before it is set.
	testPSK func(initiator bool, psk []byte)
	// testSecret is shown every per-handshake secret as it is made
	// ("x25519" ephemeral private keys, "mlkem" decapsulation seeds).
	testSecret func(kind string, b []byte)
)

// handshake is the state of one handshake. wipe clears every secret it
// can reach when the handshake ends, whatever the outcome.
type handshake struct {
	hs   *noise.HandshakeState
	dh   *handshakeDH
	mode Mode
	rng  io.Reader
	dk   *mlkem.DecapsulationKey768 // initiator, Hybrid only
}

// handshakeDH is X25519 on crypto/ecdh for one handshake. It knows this
// node's Static and the one ephemeral key it generated, and recognizes
// them by the identity of the slices flynn/noise passes back (noise keeps
// the DHKey it was given), so neither is parsed again and no key is
// looked up in any shared structure. Not safe for concurrent use (neither
// is a HandshakeState).
type handshakeDH struct {
	static  *Static
	name    string
	eph     *ecdh.PrivateKey
	ephPriv []byte // the slice noise holds as HandshakeState.e.Private
}

func (d *handshakeDH) GenerateKeypair(rng io.Reader) (noise.DHKey, error) {
	var seed [32]byte
	defer clear(seed[:])
	if _, err := io.ReadFull(rng, seed[:]); err != nil {
		return noise.DHKey{}, fmt.Errorf("ephemeral key: %w", err)
	}
	sk, err := ecdh.X25519().NewPrivateKey(seed[:])
	if err != nil {
		return noise.DHKey{}, err
	}
	d.eph = sk
	d.ephPriv = sk.Bytes()
	if testSecret != nil {
		testSecret("x25519", d.ephPriv)
	}
	return noise.DHKey{Private: d.ephPriv, Public: sk.PublicKey().Bytes()}, nil
}

func sameSlice(a, b []byte) bool { return len(a) > 0 && len(b) > 0 && &a[0] == &b[0] }

func (d *handshakeDH) DH(priv, pub []byte) ([]byte, error) {
	var sk *ecdh.PrivateKey
	switch {
	case sameSlice(priv, d.ephPriv):
		sk = d.eph
	case sameSlice(priv, d.static.priv):
		sk = d.static.sk
	default:
		return nil, errors.New("noiseconn: DH with a key this handshake does not own")
	}
	pk, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return sk.ECDH(pk)
}

func (d *handshakeDH) DHLen() int     { return 32 }
func (d *handshakeDH) DHName() string { return d.name }

func newHandshake(cfg *Config, initiator bool) (*handshake, error) {
	if cfg == nil || cfg.Static == nil {
		return nil, errors.New("noiseconn: Config.Static is required")
	}
	h := &handshake{mode: cfg.Mode, rng: rand.Reader}
	if testRandom != nil {
		h.rng = testRandom(initiator)
	}
	h.dh = &handshakeDH{static: cfg.Static, name: "25519"}
	nc := noise.Config{
		Pattern:       noise.HandshakeXX,
		Initiator:     initiator,
		Random:        h.rng,
		StaticKeypair: noise.DHKey{Private: cfg.Static.priv, Public: cfg.Static.pub},
		Prologue:      cfg.Prologue,
	}
	switch cfg.Mode {
	case Hybrid:
		h.dh.name = "25519+MLKEM768"
		nc.PresharedKeyPlacement = 3 // the PSK is set before message 3
	case Classical:
	default:
		return nil, fmt.Errorf("noiseconn: unknown mode %d", cfg.Mode)
	}
	nc.CipherSuite = noise.NewCipherSuite(h.dh, aesGCM{}, noise.HashSHA256)
	hs, err := noise.NewHandshakeState(nc)
	if err != nil {
		return nil, err
	}
	h.hs = hs
	return h, nil
}

// wipe zeroes the ephemeral private key in place (the slice is the one
// the HandshakeState holds) and drops every reference to key material.
// crypto/ecdh and crypto/mlkem keep their own copies inside their key
// objects, which offer no way to zero them; after wipe nothing references
// them and the garbage collector frees them. The HandshakeState's chaining
// key and PSK copy are unexported; the HandshakeState itself becomes
// garbage when the handshake function returns.
func (h *handshake) wipe() {
	clear(h.dh.ephPriv)
	h.dh.ephPriv = nil
	h.dh.eph = nil
	h.dk = nil
	h.hs = nil
}

// msg1Payload returns the initiator's message-1 payload.
func (h *handshake) msg1Payload() ([]byte, error) {
	if h.mode != Hybrid {
		return nil, nil
	}
	var seed [mlkem.SeedSize]byte
	defer clear(seed[:])
	if _, err := io.ReadFull(h.rng, seed[:]); err != nil {
		return nil, fmt.Errorf("ml-kem key: %w", err)
	}
	if testSecret != nil {
		testSecret("mlkem", seed[:])
	}
	dk, err := mlkem.NewDecapsulationKey768(seed[:])
	if err != nil {
		return nil, err
	}
	h.dk = dk
	return dk.EncapsulationKey().Bytes(), nil
}

// readMsg1Payload checks message 1's payload on the responder and, in
// Hybrid mode, returns the ML-KEM ciphertext for message 2 after setting
// the PSK.
func (h *handshake) readMsg1Payload(p []byte) ([]byte, error) {
	if h.mode != Hybrid {
		if len(p) != 0 {
			return nil, fmt.Errorf("peer sent a %d-byte message-1 payload: it runs %s, this side %s", len(p), SuiteHybrid, SuiteClassical)
		}
		return nil, nil
	}
	if len(p) != kemKeySize {
		return nil, fmt.Errorf("message 1 carries a %d-byte ML-KEM-768 key, want %d", len(p), kemKeySize)
	}
	ek, err := mlkem.NewEncapsulationKey768(p)
	if err != nil {
		return nil, fmt.Errorf("ML-KEM-768 key: %w", err)
	}
	var secret, ct []byte
	if testEncapsulate != nil {
		secret, ct = testEncapsulate(ek)
	} else {
		secret, ct = ek.Encapsulate()
	}
	defer clear(secret)
	if err := h.setPSK(false, secret); err != nil {
		return nil, err
	}
	return ct, nil
}

// readMsg2Payload splits message 2's payload on the initiator and, in
// Hybrid mode, decapsulates and sets the PSK.
func (h *handshake) readMsg2Payload(p []byte) ([]byte, error) {
	if h.mode != Hybrid {
		return p, nil
	}
	if len(p) < kemCiphertextSize {
		return nil, fmt.Errorf("message 2 carries %d bytes, less than an ML-KEM-768 ciphertext (%d)", len(p), kemCiphertextSize)
	}
	secret, err := h.dk.Decapsulate(p[:kemCiphertextSize])
	if err != nil {
		return nil, fmt.Errorf("ML-KEM-768 ciphertext: %w", err)
	}
	defer clear(secret)
	h.dk = nil
	if err := h.setPSK(true, secret); err != nil {
		return nil, err
	}
	return p[kemCiphertextSize:], nil
}

func (h *handshake) setPSK(initiator bool, secret []byte) error {
	if testPSK != nil {
		testPSK(initiator, secret)
	}
	return h.hs.SetPresharedKey(secret)
}

func checkPayload(p []byte) error {
	if len(p) > MaxHandshakePayload {
		return fmt.Errorf("noise handshake: payload of %d bytes exceeds %d", len(p), MaxHandshakePayload)
	}
	return nil
}

func peerKey(hs *noise.HandshakeState) (key.NodePublic, error) {
	return key.NodePublicFromRaw32(hs.PeerStatic())
}

// Initiate runs the initiator side of the handshake over conn. After
// message 2 it calls answer with the responder's proven static key and
// message-2 payload; answer returns message 3's payload, or an error that
// aborts the handshake (returned as is). The handshake obeys ctx. On error
// the caller closes conn.
func Initiate(ctx context.Context, conn net.Conn, cfg *Config, answer func(peer key.NodePublic, payload []byte) ([]byte, error)) (*Conn, error) {
	h, err := newHandshake(cfg, true)
	if err != nil {
		return nil, err
	}
	defer h.wipe()
	defer watchCtx(ctx, conn)()
	p1, err := h.msg1Payload()
	if err != nil {
		return nil, fmt.Errorf("noise handshake: %w", err)
	}
	msg1, _, _, err := h.hs.WriteMessage(nil, p1)
	if err != nil {
		return nil, fmt.Errorf("noise handshake: %w", err)
	}
	if err := writeMsg(conn, msg1); err != nil {
		return nil, ctxErr(ctx, err)
	}
	msg2, err := readMsg(conn, cfg.MaxMessage)
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	raw2, _, _, err := h.hs.ReadMessage(nil, msg2)
	if err != nil {
		return nil, fmt.Errorf("noise handshake: message 2 failed authentication (tampered, or the peer uses another suite or prologue; this side runs %s): %w", cfg.Mode, err)
	}
	payload2, err := h.readMsg2Payload(raw2)
	if err != nil {
		return nil, fmt.Errorf("noise handshake: %w", err)
	}
	if err := checkPayload(payload2); err != nil {
		return nil, err
	}
	peer, err := peerKey(h.hs)
	if err != nil {
		return nil, err
	}
	payload3, err := answer(peer, payload2)
	if err != nil {
		return nil, err
	}
	if err := checkPayload(payload3); err != nil {
		return nil, err
	}
	msg3, send, recv, err := h.hs.WriteMessage(nil, payload3)
	if err != nil {
		return nil, fmt.Errorf("noise handshake: %w", err)
	}
	if err := writeMsg(conn, msg3); err != nil {
		return nil, ctxErr(ctx, err)
	}
	return newConn(conn, peer, h.hs.ChannelBinding(), cfg.Mode, send, recv), nil
}

// Respond runs the responder side; payload2 is sent in message 2. It
// returns the initiator's message-3 payload; the caller checks Peer().
func Respond(ctx context.Context, conn net.Conn, cfg *Config, payload2 []byte) (*Conn, []byte, error) {
	if err := checkPayload(payload2); err != nil {
		return nil, nil, err
	}
	h, err := newHandshake(cfg, false)
	if err != nil {
		return nil, nil, err
	}
	defer h.wipe()
	defer watchCtx(ctx, conn)()
	msg1, err := readMsg(conn, cfg.MaxMessage)
	if err != nil {
		return nil, nil, ctxErr(ctx, err)
	}
	if cfg.Mode == Hybrid && len(msg1) == 32 {
		return nil, nil, fmt.Errorf("noise handshake: peer runs %s, this side requires %s", SuiteClassical, SuiteHybrid)
	}
	p1, _, _, err := h.hs.ReadMessage(nil, msg1)
	if err != nil {
		return nil, nil, fmt.Errorf("noise handshake: message 1: %w", err)
	}
	ct, err := h.readMsg1Payload(p1)
	if err != nil {
		return nil, nil, fmt.Errorf("noise handshake: %w", err)
	}
	out2 := payload2
	if ct != nil {
		out2 = append(ct, payload2...)
	}
	msg2, _, _, err := h.hs.WriteMessage(nil, out2)
	if err != nil {
		return nil, nil, fmt.Errorf("noise handshake: %w", err)
	}
	if err := writeMsg(conn, msg2); err != nil {
		return nil, nil, ctxErr(ctx, err)
	}
	msg3, err := readMsg(conn, cfg.MaxMessage)
	if err != nil {
		return nil, nil, ctxErr(ctx, err)
	}
	payload3, recv, send, err := h.hs.ReadMessage(nil, msg3)
	if err != nil {
		return nil, nil, fmt.Errorf("noise handshake: message 3 failed authentication: %w", err)
	}
	if err := checkPayload(payload3); err != nil {
		return nil, nil, err
	}
	peer, err := peerKey(h.hs)
	if err != nil {
		return nil, nil, err
	}
	return newConn(conn, peer, h.hs.ChannelBinding(), cfg.Mode, send, recv), payload3, nil
}

// Client runs the initiator side of a Classical handshake with a Static
// built for this call. It is kept for callers not yet moved to Initiate;
// new code builds its Static once and calls Initiate (Hybrid by default).
func Client(ctx context.Context, conn net.Conn, static key.NodePrivate, prologue []byte, respond func(peer key.NodePublic, payload []byte) ([]byte, error)) (*Conn, error) {
	s, err := NewStatic(static)
	if err != nil {
		return nil, err
	}
	return Initiate(ctx, conn, &Config{Static: s, Prologue: prologue, Mode: Classical}, respond)
}

// Server is the responder counterpart of Client (Classical).
func Server(ctx context.Context, conn net.Conn, static key.NodePrivate, prologue []byte, payload2 []byte) (*Conn, []byte, error) {
	s, err := NewStatic(static)
	if err != nil {
		return nil, nil, err
	}
	return Respond(ctx, conn, &Config{Static: s, Prologue: prologue, Mode: Classical}, payload2)
}
