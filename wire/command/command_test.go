// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package command

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/signed"
)

// fixedSigning and fixedNode build the golden vectors' keys from a seed:
// the byte b repeated 32 times (0x02 is the command key, 0x06 the node;
// see wire/key's golden test).
func fixedSigning(tb testing.TB, b byte) key.SigningPrivate {
	tb.Helper()
	var k key.SigningPrivate
	if err := k.UnmarshalText([]byte("sigpriv:" + strings.Repeat(hex.EncodeToString([]byte{b}), 32))); err != nil {
		tb.Fatal(err)
	}
	return k
}

func fixedNodeID(tb testing.TB, b byte) string {
	tb.Helper()
	k, err := key.NodePrivateFromRaw32(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		tb.Fatal(err)
	}
	return string(k.Public().ID())
}

// goldenT0 is the golden vectors' clock: 2027-01-15T08:00:00Z.
const goldenT0 = 1_800_000_000

func goldenCommand(tb testing.TB) Command {
	return Command{Project: "Pgolden", Target: fixedNodeID(tb, 0x06), Relay: "acme-relay", Seq: 7,
		IssuedAt: goldenT0, ExpiresAt: goldenT0 + int64(DefaultLifetime/time.Second), Op: OpOutletAdd,
		Outlet: &OutletArgs{Name: "jira", To: "jira.acme.internal:443", Allow: "inlet-from-saas"}}
}

func sign(tb testing.TB, k key.SigningPrivate, c Command) []byte {
	tb.Helper()
	b, err := Sign(k, c)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestVerify(t *testing.T) {
	k := fixedSigning(t, 0x02)
	base := goldenCommand(t)
	self := base.Target
	now := time.Unix(goldenT0+60, 0)
	with := func(mod func(*Command)) []byte {
		c := base
		o := *base.Outlet
		c.Outlet = &o
		mod(&c)
		return sign(t, k, c)
	}
	tampered := sign(t, k, base)
	tampered[len(tampered)-70] ^= 1 // inside the payload
	tests := []struct {
		name      string
		data      []byte
		last      uint64
		now       time.Time
		wantErr   error  // errors.Is target, or nil
		wantText  string // substring of the error
		authentic bool   // a refused command still comes back, for the audit log
	}{
		{name: "good", data: sign(t, k, base), last: 6, now: now, authentic: true},
		{name: "at expiry", data: sign(t, k, base), now: time.Unix(base.ExpiresAt, 0), authentic: true},
		{name: "tampered", data: tampered, now: now, wantErr: ErrBadSignature},
		{name: "other key", data: sign(t, fixedSigning(t, 0x01), base), now: now, wantErr: ErrBadSignature},
		{name: "garbage", data: []byte("not cbor"), now: now, wantText: "malformed command"},
		{name: "other context", data: mustSign(t, k, signed.ContextManifest, base), now: now, wantText: "malformed command"},
		{name: "replay", data: sign(t, k, base), last: 7, now: now, wantErr: ErrReplay, authentic: true},
		{name: "rollback", data: sign(t, k, base), last: 9, now: now, wantErr: ErrReplay, authentic: true},
		{name: "other node", data: with(func(c *Command) { c.Target = fixedNodeID(t, 0x05) }), now: now, wantErr: ErrWrongTarget, authentic: true},
		{name: "other project", data: with(func(c *Command) { c.Project = "Pother" }), now: now, wantErr: ErrWrongTarget, authentic: true},
		{name: "expired", data: sign(t, k, base), now: time.Unix(base.ExpiresAt+1, 0), wantErr: ErrExpired, authentic: true},
		{name: "no destination", data: with(func(c *Command) { c.Outlet.To = "" }), now: now, wantText: "without a destination", authentic: true},
		{name: "unknown op", data: with(func(c *Command) { c.Op = "reboot" }), now: now, wantText: `unknown operation "reboot"`, authentic: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Verify(k.Public(), "Pgolden", self, tt.data, tt.last, tt.now)
			switch {
			case tt.wantErr == nil && tt.wantText == "":
				if err != nil || c == nil || c.Seq != 7 {
					t.Fatalf("Verify = %+v, %v", c, err)
				}
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr), tt.wantText != "" && (err == nil || !strings.Contains(err.Error(), tt.wantText)):
				t.Fatalf("err = %v, want %v %q", err, tt.wantErr, tt.wantText)
			}
			if (c != nil) != tt.authentic {
				t.Fatalf("command returned = %v, want %v (only a genuinely signed command comes back)", c != nil, tt.authentic)
			}
		})
	}
}

func mustSign(tb testing.TB, k key.SigningPrivate, context string, v any) []byte {
	tb.Helper()
	b, err := signed.Sign(k, context, v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestSummaryOfInvalidCommand: Summary describes every command Verify
// returns, and Verify returns authentic commands that Validate refuses
// (the node records them in its audit log with Summary). An outlet
// operation without outlet arguments must not crash the node.
//
// This test fails today: Summary dereferences c.Outlet. Found by
// FuzzVerify's property "every returned command can be summarized"; see
// the fuzz report for the fix.
func TestSummaryOfInvalidCommand(t *testing.T) {
	k := fixedSigning(t, 0x02)
	for _, op := range []string{OpOutletAdd, OpOutletRemove} {
		c := goldenCommand(t)
		c.Op, c.Outlet = op, nil
		got, err := Verify(k.Public(), c.Project, c.Target, sign(t, k, c), 0, time.Unix(goldenT0, 0))
		if err == nil || got == nil {
			t.Fatalf("%s without arguments: Verify = %+v, %v", op, got, err)
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("Summary of an authentic %s command without outlet arguments panics: %v", op, r)
				}
			}()
			if s := got.Summary(); !strings.Contains(s, op[len("outlet."):]) {
				t.Errorf("Summary = %q", s)
			}
		}()
	}
}

// FuzzVerify: only genuinely signed commands come back. Every command
// this test signed is known; whatever Verify returns (accepted, or
// refused but authentic, for the audit log) is one of them, decoded
// exactly, under a signature that checks over the command context. An
// accepted command is for this project and node, unexpired, newer than
// lastSeq and well formed; a refused authentic one fails at least one of
// those; a bad signature or malformed bytes return no command. Every
// returned command can be summarized, and errors are one line.
func FuzzVerify(f *testing.F) {
	k := fixedSigning(f, 0x02)
	base := goldenCommand(f)
	self := base.Target
	known := map[string]Command{}
	add := func(c Command, signer key.SigningPrivate) {
		b := sign(f, signer, c)
		if signer.Public().Equal(k.Public()) {
			env, err := signed.Open(b)
			if err != nil {
				f.Fatal(err)
			}
			known[string(env.Payload)] = c
		}
		f.Add(b, uint64(6), int64(60))
		f.Add(b, uint64(7), int64(60))
		f.Add(b, uint64(0), int64(DefaultLifetime/time.Second)+1)
	}
	add(base, k)
	add(base, fixedSigning(f, 0x01)) // another key: never verifies
	for _, mod := range []func(*Command){
		func(c *Command) { c.Op, c.Outlet, c.Seq = OpUpdateCheck, nil, 8 },
		func(c *Command) { c.Op, c.Outlet = OpOutletRemove, &OutletArgs{Name: "jira"} },
		func(c *Command) { c.Target = fixedNodeID(f, 0x05) },
		func(c *Command) { c.Project, c.Relay = "Pother", "" },
		func(c *Command) { c.Outlet = &OutletArgs{Name: "jira"} }, // add without a destination
		func(c *Command) { c.Op = "reboot" },
		// An outlet operation without arguments is left to
		// TestSummaryOfInvalidCommand, which fails until Summary copes.
	} {
		c := base
		mod(&c)
		add(c, k)
	}
	f.Add([]byte{0xa0}, uint64(0), int64(0))
	f.Fuzz(func(t *testing.T, data []byte, lastSeq uint64, nowOffset int64) {
		now := time.Unix(goldenT0+nowOffset%(1<<40), 0)
		c, err := Verify(k.Public(), base.Project, self, data, lastSeq, now)
		if err != nil && strings.ContainsAny(err.Error(), "\n\r") {
			t.Fatalf("error is not one line: %q", err)
		}
		if c == nil {
			if err == nil {
				t.Fatal("no command and no error")
			}
			return
		}
		if errors.Is(err, ErrBadSignature) {
			t.Fatalf("a command came back with %v", err)
		}
		env, oerr := signed.Open(data)
		want, ok := known[string(env.Payload)]
		if oerr != nil || !ok {
			t.Fatalf("returned a command nobody signed: %+v", c)
		}
		if !ed25519.Verify(k.Public().Ed25519(), append([]byte(signed.ContextCommand+"\x00"), env.Payload...), env.Sig) {
			t.Fatal("returned a command whose signature does not check over the command context")
		}
		if !reflect.DeepEqual(*c, want) {
			t.Fatalf("decoded %+v, signed %+v", *c, want)
		}
		_ = c.Summary()
		ok = c.Project == base.Project && c.Target == self && now.Unix() <= c.ExpiresAt && c.Seq > lastSeq && c.Validate() == nil
		if (err == nil) != ok {
			t.Fatalf("Verify(%+v, last %d, now %d) = %v", *c, lastSeq, now.Unix(), err)
		}
	})
}
