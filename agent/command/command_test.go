// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package command

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeportal/connect/agent/config"
	"github.com/edgeportal/connect/policy"
	wc "github.com/edgeportal/connect/wire/command"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/signed"
)

func TestVerify(t *testing.T) {
	k := key.NewSigningPrivate()
	now := time.Unix(1_800_000_000, 0)
	base := wc.Command{Project: "P", Target: "I1", Seq: 5, IssuedAt: now.Unix(), ExpiresAt: now.Add(time.Hour).Unix(),
		Op: wc.OpOutletAdd, Outlet: &wc.OutletArgs{Name: "jira", To: "jira.local:443"}}
	sign := func(c wc.Command, k key.SigningPrivate) []byte {
		b, err := wc.Sign(k, c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if _, err := Verify(k.Public(), "P", "I1", sign(base, k), 4, now); err != nil {
		t.Fatalf("good command: %v", err)
	}
	tampered := sign(base, k)
	tampered[len(tampered)/2] ^= 1
	other := base
	other.Target = "I2"
	old := base
	old.ExpiresAt = now.Add(-time.Second).Unix()
	bad := base
	bad.Outlet = &wc.OutletArgs{Name: "x", To: "x:1", Allow: "a and ("}
	tests := []struct {
		name string
		data []byte
		last uint64
		want string
	}{
		{"tampered", tampered, 0, ""},
		{"other key", sign(base, key.NewSigningPrivate()), 0, "bad signature"},
		{"replay", sign(base, k), 5, "replayed"},
		{"older", sign(base, k), 9, "replayed"},
		{"other node", sign(other, k), 0, "another node"},
		{"expired", sign(old, k), 0, "expired"},
		{"bad policy", sign(bad, k), 0, "malformed allow expression"},
		{"garbage", []byte("not cbor at all"), 0, "malformed command"},
	}
	for _, tt := range tests {
		_, err := Verify(k.Public(), "P", "I1", tt.data, tt.last, now) // the node's Verify
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestAllowList(t *testing.T) {
	al, err := ParseAllowList([]string{"github.local:80", "*.acme.internal:443", "10.20.0.0/16:5432", "[fd00::/8]:*", "192.0.2.7:22"})
	if err != nil {
		t.Fatal(err)
	}
	ok := []string{"github.local:80", "GitHub.Local:80", "jira.acme.internal:443", "a.b.acme.internal:443", "10.20.3.4:5432", "[fd00::1]:9", "192.0.2.7:22", "db.example:5432"}
	no := []string{"github.local:81", "acme.internal:443", "evilacme.internal:443", "10.21.0.1:5432", "10.20.0.1:5433", "192.0.2.8:22", "other.example:80"}
	resolve := func(host string) ([]netip.Addr, error) {
		if host == "db.example" {
			return []netip.Addr{netip.MustParseAddr("10.20.9.9")}, nil
		}
		if host == "moved.example" {
			return []netip.Addr{netip.MustParseAddr("10.99.0.1")}, nil
		}
		return nil, errors.New("no such host")
	}
	no = append(no, "moved.example:5432")
	for _, d := range ok {
		if err := al.CheckDestination(d, resolve); err != nil {
			t.Errorf("%s refused: %v", d, err)
		}
	}
	for _, d := range no {
		if err := al.CheckDestination(d, resolve); !errors.Is(err, ErrNotAllowed) {
			t.Errorf("%s: %v, want not allowed", d, err)
		}
	}
	var none *AllowList
	if err := none.CheckDestination("github.local:80", resolve); err == nil || !strings.Contains(err.Error(), "disabled") {
		t.Errorf("no allow-list: %v", err)
	}
	// A name allowed only through a CIDR is checked at dial time.
	ctl := al.DialControl("db.example:5432")
	if err := ctl("tcp", "10.20.9.9:5432", nil); err != nil {
		t.Errorf("dial into the CIDR refused: %v", err)
	}
	if err := ctl("tcp", "10.99.9.9:5432", nil); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("dial outside the CIDR: %v", err)
	}
	if err := al.DialControl("github.local:80")("tcp", "203.0.113.1:80", nil); err != nil {
		t.Errorf("name-pattern outlet refused at dial: %v", err)
	}
}

func TestAudit(t *testing.T) {
	dir := t.TempDir()
	a, err := OpenAudit(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := a.Append(Entry{Kind: "portal", Peer: "I1", Outlet: "github", Decision: "allowed"}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := VerifyAudit(dir); err != nil || n != 0 {
		t.Fatalf("allowed portals are written in groups: %d on disk before the group, %v", n, err)
	}
	a.Close()
	a2, _ := OpenAudit(dir) // reopened: the chain continues
	a2.Append(Entry{Kind: "command", Seq: 1, Op: "outlet add", Decision: "applied"})
	if n, err := VerifyAudit(dir); err != nil || n != 6 {
		t.Fatalf("verify: %d %v", n, err)
	}
	path := filepath.Join(dir, AuditFile)
	orig, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(orig), "\n")
	check := func(name, content, want string) {
		os.WriteFile(path, []byte(content), 0o600)
		if _, err := VerifyAudit(dir); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
	}
	check("edited", strings.Replace(string(orig), `"allowed"`, `"denied"`, 1), "edited")
	check("removed", strings.Join(append(lines[:2:2], lines[3:]...), ""), "removed")
	check("cut off", strings.Join(lines[:4], ""), "cut off")
	os.WriteFile(path, orig, 0o600)
	if _, err := VerifyAudit(dir); err != nil {
		t.Fatal(err)
	}
}

// fixedSigning builds a key from a seed: the byte b repeated 32 times
// (0x02 is the golden vectors' command key; see wire/key).
func fixedSigning(tb testing.TB, b byte) key.SigningPrivate {
	tb.Helper()
	var k key.SigningPrivate
	if err := k.UnmarshalText([]byte("sigpriv:" + strings.Repeat(hex.EncodeToString([]byte{b}), 32))); err != nil {
		tb.Fatal(err)
	}
	return k
}

// FuzzVerify: the node's Verify returns only commands the command key
// signed, decoded exactly; one it accepts is for this project and node,
// unexpired, newer than lastSeq, well formed, and its allow expression
// parses; one it refuses but returns (for the audit log) fails one of
// those; garbage and bad signatures return no command.
func FuzzVerify(f *testing.F) {
	k := fixedSigning(f, 0x02)
	base := wc.Command{Project: "P", Target: "I1", Seq: 5, IssuedAt: 1_800_000_000, ExpiresAt: 1_800_003_600,
		Op: wc.OpOutletAdd, Outlet: &wc.OutletArgs{Name: "jira", To: "jira.local:443", Allow: "inlet-from-saas and not guest"}}
	known := map[string]wc.Command{}
	for _, mod := range []func(*wc.Command){
		func(c *wc.Command) {},
		func(c *wc.Command) { c.Outlet = &wc.OutletArgs{Name: "x", To: "x:1", Allow: "a and ("} },
		func(c *wc.Command) { c.Op, c.Outlet = wc.OpOutletRemove, &wc.OutletArgs{Name: "jira"} },
		func(c *wc.Command) { c.Op, c.Outlet = wc.OpUpdateCheck, nil },
		func(c *wc.Command) { c.Target = "I2" },
	} {
		c := base
		mod(&c)
		b, err := wc.Sign(k, c)
		if err != nil {
			f.Fatal(err)
		}
		env, _ := signed.Open(b)
		known[string(env.Payload)] = c
		f.Add(b, uint64(4), int64(1_800_000_060))
		f.Add(b, uint64(5), int64(1_800_000_060))
		f.Add(b, uint64(0), int64(1_800_003_601))
	}
	other, _ := wc.Sign(fixedSigning(f, 0x01), base)
	f.Add(other, uint64(0), int64(1_800_000_060))
	f.Add([]byte{0xa0}, uint64(0), int64(0))
	f.Fuzz(func(t *testing.T, data []byte, lastSeq uint64, now int64) {
		at := time.Unix(now%(1<<40), 0)
		c, err := Verify(k.Public(), "P", "I1", data, lastSeq, at)
		if c == nil {
			if err == nil {
				t.Fatal("no command and no error")
			}
			return
		}
		env, _ := signed.Open(data)
		want, ok := known[string(env.Payload)]
		if !ok {
			t.Fatalf("returned a command nobody signed: %+v", c)
		}
		if !reflect.DeepEqual(*c, want) {
			t.Fatalf("decoded %+v, signed %+v", *c, want)
		}
		good := c.Project == "P" && c.Target == "I1" && at.Unix() <= c.ExpiresAt && c.Seq > lastSeq && c.Validate() == nil
		if good && c.Outlet != nil && c.Outlet.Allow != "" {
			_, perr := policy.Parse(c.Outlet.Allow)
			good = perr == nil
		}
		if (err == nil) != good {
			t.Fatalf("Verify(%+v, last %d, at %d) = %v", *c, lastSeq, at.Unix(), err)
		}
	})
}

// FuzzParseAllowList: an entry the config accepts is one the node can
// load; a refusal returns no list and one line; an accepted entry allows
// the destination it names and refuses it on another port (unless it
// allows any port); and whatever CheckDestination allows, DialControl
// lets the node dial.
func FuzzParseAllowList(f *testing.F) {
	for _, s := range []string{"github.local:80", "[fd00::/8]:*", "*.x:1", "10.20.0.0/16:5432", "192.0.2.7:22", "GitHub.Local.:443",
		"[::ffff:10.0.0.1]:9", "*.:1", ":80", "a:0", "a:+80", "[fe80::1%eth0]:22", "1.2.3.4/33:1"} {
		f.Add(s, "github.local:80")
	}
	f.Fuzz(func(t *testing.T, s, dest string) {
		al, err := ParseAllowList([]string{s})
		if cerr := config.ValidateAllowEntry(s); cerr == nil && err != nil {
			t.Fatalf("the config accepts %q but the node refuses it: %v", s, err)
		}
		if err != nil {
			if al != nil {
				t.Fatalf("ParseAllowList returned a list with error %v", err)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		if len(al.entries) != 1 {
			t.Fatalf("%d entries for one item", len(al.entries))
		}
		e := al.entries[0]
		port := e.port
		if e.anyPort {
			port = 443
		}
		var own string
		switch {
		case e.prefix.IsValid():
			own = netip.AddrPortFrom(e.prefix.Addr(), uint16(port)).String()
		case e.suffix != "":
			own = net.JoinHostPort("host"+e.suffix, strconv.Itoa(port))
		default:
			own = net.JoinHostPort(e.host, strconv.Itoa(port))
		}
		if config.ValidateAllowEntry(s) == nil {
			if err := al.CheckDestination(own, nil); err != nil {
				t.Fatalf("entry %q does not allow %s: %v", s, own, err)
			}
			if !e.anyPort {
				h, _, _ := net.SplitHostPort(own)
				other := net.JoinHostPort(h, strconv.Itoa(port%65535+1))
				if err := al.CheckDestination(other, nil); !errors.Is(err, ErrNotAllowed) {
					t.Fatalf("entry %q allows %s on another port: %v", s, other, err)
				}
			}
		}
		if al.CheckDestination(dest, nil) == nil {
			// The dialer hands DialControl the address in canonical form.
			h, p, _ := net.SplitHostPort(dest)
			n, _ := strconv.Atoi(p)
			address := net.JoinHostPort("192.0.2.1", p) // what a name might resolve to
			if a, err := netip.ParseAddr(h); err == nil {
				address = netip.AddrPortFrom(a, uint16(n)).String()
			}
			if err := al.DialControl(dest)("tcp", address, nil); err != nil {
				t.Fatalf("%s is allowed but dialling it at %s is refused: %v", dest, address, err)
			}
		}
		var none *AllowList
		if none.CheckDestination(dest, nil) == nil {
			t.Fatal("a nil allow-list allowed a destination")
		}
	})
}

// FuzzReadAudit: the reader returns one record per line, each exactly as
// its JSON says (written back and read again, the records are the same);
// on a bad line it names the line and returns only the records before it.
func FuzzReadAudit(f *testing.F) {
	f.Add([]byte(`{"n":1,"time":"t","kind":"portal","decision":"allowed","prev":"","hash":"x"}` + "\n"))
	f.Add([]byte(`{"n":1,"kind":"portal"}` + "\n" + `{"n":2}`))
	f.Add([]byte(`{"n":1}` + "\nnot json\n"))
	f.Add([]byte("\n\n"))
	f.Add([]byte(`{"n":1,"N":2}` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := readEntries(bytes.NewReader(b))
		lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		if len(b) == 0 {
			lines = nil
		}
		if err != nil {
			var line int
			if _, serr := fmt.Sscanf(err.Error(), "audit log line %d:", &line); serr == nil {
				if line != len(entries)+1 {
					t.Fatalf("error at line %d after %d records: %v", line, len(entries), err)
				}
			} else if !errors.Is(err, bufio.ErrTooLong) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if len(entries) != len(lines) {
			t.Fatalf("%d records from %d lines", len(entries), len(lines))
		}
		var buf bytes.Buffer
		for _, e := range entries {
			line, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			buf.Write(append(line, '\n'))
		}
		again, err := readEntries(&buf)
		if err != nil || !reflect.DeepEqual(again, entries) {
			t.Fatalf("records written back read as %+v, %v; want %+v", again, err, entries)
		}
	})
}
