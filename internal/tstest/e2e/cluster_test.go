// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edgeportal/connect/internal/tstest/pgtest"
)

// cluster is the vendor's side as a cluster: a real PostgreSQL with a
// database for the relays and one for the authority, relay nodes with a
// directory each, and the authority, all as real processes.
type cluster struct {
	t                 *testing.T
	env               *Env
	pg                *pgtest.Server
	relaysDB, authDB  string
	authDir, vendor   string
	relays            []*relayNode
	auth              *Proc
	vendorN, customer *Node
}

type relayNode struct {
	name, dir, addr string
	proc            *Proc
}

func createDB(t *testing.T, pg *pgtest.Server, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, pg.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "create database "+name); err != nil {
		t.Fatal(err)
	}
	return pg.DSN(name)
}

func (c *cluster) hub(args ...string) Result {
	c.t.Helper()
	return c.env.Run(c.env.HubBin, args...)
}

func (c *cluster) mustHub(args ...string) string {
	c.t.Helper()
	r := c.hub(args...)
	if r.Code != 0 {
		c.t.Fatalf("hub %v: %s", args, r.Stderr)
	}
	return r.Stdout
}

// startCluster makes n relay nodes sharing one database (the first makes
// the key the others share) and the authority, and starts them all.
func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	pg := pgtest.Start(t)
	c := &cluster{t: t, env: NewEnv(t), pg: pg}
	c.relaysDB, c.authDB = createDB(t, pg, "relays"), createDB(t, pg, "auth")
	c.authDir, c.vendor = filepath.Join(c.env.Dir, "auth"), filepath.Join(c.env.Dir, "vendor")
	c.mustHub("keys", "create", "--dir", c.vendor)
	for i := range n {
		addr := FreePort(t)
		for slices.ContainsFunc(c.relays, func(r *relayNode) bool { return r.addr == addr }) {
			addr = FreePort(t)
		}
		r := &relayNode{name: fmt.Sprintf("relay%d", i+1), dir: filepath.Join(c.env.Dir, fmt.Sprintf("hub%d", i+1)), addr: addr}
		args := []string{"init", "--dir", r.dir, "--addr", r.addr, "--store", c.relaysDB}
		if i > 0 {
			args = append(args, "--key-from", c.relays[0].dir)
		}
		c.mustHub(args...)
		if i == 0 {
			c.mustHub("authority", "init", "--dir", c.authDir, "--hub-dir", r.dir, "--vendor-dir", c.vendor, "--store", c.authDB)
		}
		c.relays = append(c.relays, r)
	}
	for i := range c.relays {
		c.startRelay(i)
	}
	c.auth = c.env.Start("authority", c.env.HubBin, "authority", "serve", "--dir", c.authDir, "--log-level", "debug")
	Await(t, 30*time.Second, "the authority writes every relay node into tickets", func() bool {
		return len(c.ticketHubs()) == n
	})
	return c
}

func (c *cluster) startRelay(i int) {
	c.t.Helper()
	r := c.relays[i]
	r.proc = c.env.Start(r.name, c.env.HubBin, "serve", "--dir", r.dir, "--log-level", "debug")
	Await(c.t, 30*time.Second, r.name+" listening", func() bool {
		if r.proc.Exited() {
			c.t.Fatalf("%s exited:\n%s", r.name, r.proc.Logs())
		}
		_, err := os.Stat(filepath.Join(r.dir, "admin.sock"))
		return err == nil
	})
}

// ticketHubs are the relay addresses the authority writes into tickets.
func (c *cluster) ticketHubs() []string {
	b, err := os.ReadFile(filepath.Join(c.authDir, "authority.json"))
	if err != nil {
		return nil
	}
	var cfg struct{ Hubs []string }
	json.Unmarshal(b, &cfg)
	return cfg.Hubs
}

func (c *cluster) ticket(name string, args ...string) string {
	c.t.Helper()
	path := filepath.Join(c.env.Dir, name)
	c.mustHub(append([]string{"ticket", "create", "--dir", c.authDir, "--out", path}, args...)...)
	return path
}

// relayOf returns the relay node a node is connected to.
func (c *cluster) relayOf(n *Node) int {
	st, err := n.Status()
	if err != nil {
		return -1
	}
	return slices.IndexFunc(c.relays, func(r *relayNode) bool { return r.addr == st.Hub })
}

// startNodes starts the vendor node (an inlet to acme-relay's github) and
// the customer node (relay acme-relay, outlet github), pinned to relay
// nodes when the indexes are not negative.
func (c *cluster) startNodes(vendorOn, customerOn int, github string) {
	c.t.Helper()
	vt := c.ticket("vendor.ticket", "--attribute", "inlet-from-saas", "--relay", "saas-relay")
	ct := c.ticket("customer.ticket", "--attribute", "outlet-from-saas", "--relay", "acme-relay")
	ccfg := filepath.Join(c.env.Dir, "customer.yaml")
	os.WriteFile(ccfg, []byte(fmt.Sprintf(`relay: acme-relay
tcp-outlet:
  from: github
  to: %s
policy:
  resource-type: tcp-outlet
  allow: inlet-from-saas
remote-outlets:
  allow:
    - 127.0.0.0/8:%s
`, github, port(github))), 0o600)
	vcfg := filepath.Join(c.env.Dir, "vendor.yaml")
	os.WriteFile(vcfg, []byte("policy:\n  resource-type: tcp-inlet\n  allow: outlet-from-saas\n"), 0o600)
	vargs := []string{"--enrollment-ticket", vt, "--config", vcfg}
	cargs := []string{"--enrollment-ticket", ct, "--config", ccfg}
	if vendorOn >= 0 {
		vargs = append(vargs, "--hub", c.relays[vendorOn].addr)
	}
	if customerOn >= 0 {
		cargs = append(cargs, "--hub", c.relays[customerOn].addr)
	}
	c.vendorN = c.env.StartNode("vendor", vargs...)
	c.customer = c.env.StartNode("customer", cargs...)
	c.vendorN.AwaitRelayUp()
	c.customer.AwaitRelayUp()
}

func (c *cluster) inlet(to string) string {
	c.t.Helper()
	addr := FreePort(c.t)
	if r := c.vendorN.CLI([]string{"tcp-inlet", "create"}, "--from", addr, "--via", "acme-relay", "--to", to); r.Code != 0 {
		c.t.Fatalf("tcp-inlet create: %s", r.Stderr)
	}
	return addr
}

func (c *cluster) members() []map[string]any {
	c.t.Helper()
	var out []map[string]any
	json.Unmarshal([]byte(c.mustHub("members", "list", "--dir", c.authDir, "--json")), &out)
	return out
}

func (c *cluster) sql(q string, args ...any) int {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.relaysDB)
	if err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, q, args...).Scan(&n); err != nil {
		c.t.Fatal(err)
	}
	return n
}

// TestClusterAcrossRelayNodes: three relay nodes, one database. An inlet
// on one relay node reaches an outlet connected to another; nodes enroll
// through a relay node the authority is not connected to; a one-use
// ticket redeemed at once through all three enrolls one identity;
// commands queued on one relay node reach the node on another in order;
// a revocation cuts a node off wherever it is connected; the database
// going away leaves connected nodes working and fails new enrollments
// with a reason, and nothing of it is half-written.
func TestClusterAcrossRelayNodes(t *testing.T) {
	c := startCluster(t, 3)
	github := HTTPServer(t, "github\n")
	c.startNodes(0, 1, github)

	// A portal from relay node 1 to relay node 2, ciphertext only.
	in := c.inlet("github")
	if got, err := Get(in); err != nil || got != "github\n" {
		t.Fatalf("portal across relay nodes: %q %v\nrelay1:\n%s\nrelay2:\n%s", got, err, c.relays[0].proc.Logs(), c.relays[1].proc.Logs())
	}
	// The customer enrolled through relay node 2; the authority is on 1.
	if !strings.Contains(c.relays[0].proc.Logs(), `msg="authority connected"`) {
		t.Fatalf("the authority is not on relay node 1")
	}

	// Exactly once: one one-use ticket, redeemed at once through three relay nodes.
	once := c.ticket("once.ticket", "--attribute", "inlet-from-saas")
	var racers []*Node
	for i := range c.relays {
		cp := filepath.Join(c.env.Dir, fmt.Sprintf("once%d.ticket", i))
		b, _ := os.ReadFile(once)
		os.WriteFile(cp, b, 0o600)
		racers = append(racers, c.env.StartNode(fmt.Sprintf("racer%d", i), "--enrollment-ticket", cp, "--hub", c.relays[i].addr))
	}
	Await(t, 60*time.Second, "every racer enrolled or refused", func() bool {
		for _, r := range racers {
			if !r.Proc.Exited() && !strings.Contains(r.Proc.Logs(), "enrolled;") {
				return false
			}
		}
		return true
	})
	enrolled, refused := 0, 0
	for _, r := range racers {
		switch {
		case strings.Contains(r.Proc.Logs(), "enrolled;"):
			enrolled++
		case strings.Contains(r.Proc.Logs(), "used up"):
			refused++
		}
	}
	if enrolled != 1 || refused != 2 {
		t.Fatalf("a one-use ticket redeemed through three relay nodes: %d enrolled, %d refused as used up; want 1 and 2", enrolled, refused)
	}
	if n := len(c.members()); n != 3 {
		t.Fatalf("members after the race: %d, want 3 (vendor, customer, one racer)", n)
	}

	// Commands queued on relay node 3 reach the customer on relay node 2,
	// in order, each answered back to the relay node that queued it.
	for i := range 3 {
		r := c.hub("outlet", "push", "--dir", c.relays[2].dir, "--command-key", filepath.Join(c.vendor, "command.key"),
			"--relay", "acme-relay", "--from", fmt.Sprintf("pushed%d", i), "--to", github, "--wait", "15s")
		if r.Code != 0 || !strings.Contains(r.Stdout, "applied") {
			t.Fatalf("push %d through relay node 3: %d %s %s", i, r.Code, r.Stdout, r.Stderr)
		}
	}
	var cmds []struct {
		Seq   uint64
		State string
	}
	json.Unmarshal([]byte(c.mustHub("commands", "list", "--dir", c.relays[0].dir, "--json")), &cmds)
	if len(cmds) != 3 {
		t.Fatalf("commands: %+v", cmds)
	}
	for i, cmd := range cmds {
		if cmd.Seq != uint64(i+1) || cmd.State != "applied" {
			t.Fatalf("commands out of order or not applied: %+v", cmds)
		}
	}
	if got, err := Get(c.inlet("pushed2")); err != nil || got != "github\n" {
		t.Fatalf("through a pushed outlet: %q %v", got, err)
	}

	// A relay name has one owner cluster-wide: relay list on any node.
	var relays []struct {
		Name, Owner string
		Up          bool
	}
	json.Unmarshal([]byte(c.mustHub("relay", "list", "--dir", c.relays[2].dir, "--json")), &relays)
	if len(relays) != 2 || !relays[0].Up || !relays[1].Up {
		t.Fatalf("relay list on relay node 3: %+v", relays)
	}

	// Revocation reaches the node on relay node 2 (the authority is on 1).
	winner := racers[slices.IndexFunc(racers, func(r *Node) bool { return strings.Contains(r.Proc.Logs(), "enrolled;") })]
	st, err := winner.Status()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.mustHub("members", "revoke", "--dir", c.authDir, st.Identifier)
	Await(t, 10*time.Second, "the revoked node is cut off", func() bool { return winner.Proc.Exited() })
	t.Logf("revocation: the node on another relay node stopped %s after the revoke", time.Since(start).Round(time.Millisecond))

	// The database goes away: connected nodes stay connected and portals
	// work; a new enrollment fails with a reason; nothing half-written.
	late := c.ticket("late.ticket", "--attribute", "inlet-from-saas")
	if err := c.pg.Kill(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, err := Get(in); err != nil || got != "github\n" {
		t.Fatalf("portal with the database down: %q %v", got, err)
	}
	newcomer := c.env.StartNode("newcomer", "--enrollment-ticket", late, "--hub", c.relays[0].addr)
	Await(t, 30*time.Second, "the newcomer told why it cannot enroll", func() bool {
		return strings.Contains(newcomer.Proc.Logs(), "database is unavailable")
	})
	if st, err := c.customer.Status(); err != nil || !st.Relay.Connected {
		t.Fatalf("the customer with the database down: %+v %v", st, err)
	}
	if err := c.pg.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	newcomer.AwaitHub()
	if n := len(c.members()); n != 4 {
		t.Fatalf("members after the outage: %d, want 4", n)
	}
}

// TestClusterLosingRelayNode: kill the relay node a customer is on; it
// reconnects to another within its backoff, its relay re-registers, new
// portals work, a command queued meanwhile arrives, and the dead node's
// leases expire on their own. Then a rolling restart of every relay node
// never leaves the relay unreachable for longer than one reconnect.
func TestClusterLosingRelayNode(t *testing.T) {
	c := startCluster(t, 3)
	github := HTTPServer(t, "github\n")
	c.startNodes(-1, -1, github)
	dead := c.relayOf(c.customer)
	if dead < 0 {
		t.Fatal("the customer's relay node is unknown")
	}
	deadID := nodeID(t, c.relays[dead].dir)
	// A node that can only reach the doomed relay node (--hub): its
	// relay's presence stays there until the lease runs out by itself.
	it := c.ticket("idle.ticket", "--relay", "idle-relay")
	idle := c.env.StartNode("idle", "--enrollment-ticket", it, "--hub", c.relays[dead].addr)
	idle.AwaitRelayUp()
	c.relays[dead].proc.Kill()
	killed := time.Now()
	start := time.Now()
	// A command queued while the customer is away is not lost.
	other := (dead + 1) % len(c.relays)
	if r := c.hub("outlet", "push", "--dir", c.relays[other].dir, "--command-key", filepath.Join(c.vendor, "command.key"),
		"--relay", "acme-relay", "--from", "while-away", "--to", github); r.Code != 0 {
		t.Fatalf("push while the customer is away: %s", r.Stderr)
	}
	Await(t, 30*time.Second, "the customer on another relay node", func() bool {
		st, err := c.customer.Status()
		return err == nil && st.Relay.Connected && c.relayOf(c.customer) != dead
	})
	t.Logf("the customer reconnected to relay node %d %s after relay node %d died", c.relayOf(c.customer)+1, time.Since(start).Round(time.Millisecond), dead+1)
	Await(t, 30*time.Second, "the vendor on a live relay node", func() bool {
		st, err := c.vendorN.Status()
		return err == nil && st.HubConnected && c.relayOf(c.vendorN) != dead
	})
	var got string
	Await(t, 30*time.Second, "a new portal after the loss", func() bool {
		var err error
		got, err = Get(c.inlet("while-away"))
		return err == nil && got == "github\n"
	})
	if n := c.sql(`select count(*) from presence where node = $1 and relay = 'idle-relay'`, deadID); n != 1 {
		t.Fatalf("the idle relay's presence on the dead node: %d rows", n)
	}
	Await(t, hubLease+10*time.Second, "the dead relay node's leases expired", func() bool {
		return c.sql(`select count(*) from presence where node = $1 and lease_until > now()`, deadID) == 0
	})
	t.Logf("the dead relay node's last lease expired %s after it died (lease %s)", time.Since(killed).Round(100*time.Millisecond), hubLease)
	idle.Proc.Stop()
	c.startRelay(dead)

	// Rolling restart, one relay node at a time, while a client keeps
	// opening portals: the longest outage must stay within one reconnect.
	in := c.inlet("github")
	var mu sync.Mutex
	var worst, cur time.Duration
	var okCount, failCount int
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := time.Now()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			_, err := Get(in)
			now := time.Now()
			mu.Lock()
			if err != nil {
				failCount++
				cur += now.Sub(last)
				worst = max(worst, cur)
			} else {
				okCount++
				cur = 0
			}
			mu.Unlock()
			last = now
		}
	}()
	for i := range c.relays {
		c.relays[i].proc.Stop()
		time.Sleep(time.Second)
		c.startRelay(i)
		time.Sleep(3 * time.Second)
	}
	close(stop)
	<-done
	t.Logf("rolling restart: %d portals ok, %d failed, longest outage %s", okCount, failCount, worst.Round(time.Millisecond))
	if worst > oneReconnect {
		t.Fatalf("during the rolling restart the relay was unreachable for %s, longer than one reconnect (%s)", worst, oneReconnect)
	}
	if got, err := Get(in); err != nil || got != "github\n" {
		t.Fatalf("after the rolling restart: %q %v", got, err)
	}
}

// hubLease is the relay's presence lease (hub.PresenceLease).
const hubLease = 15 * time.Second

// oneReconnect bounds one reconnect of a node: its backoff after a lost
// connection (at most 2 s in the second round) plus a handshake and the
// relay's registration, with room for a loaded machine.
const oneReconnect = 8 * time.Second

func port(addr string) string {
	_, p, _ := strings.Cut(addr, ":")
	return p
}

func nodeID(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "hub.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		NodeID string `json:"node_id"`
	}
	json.Unmarshal(b, &cfg)
	return cfg.NodeID
}

// TestClusterBadInput: each refusal is one line and changes nothing.
func TestClusterBadInput(t *testing.T) {
	pg := pgtest.Start(t)
	env := NewEnv(t)
	relays := createDB(t, pg, "relays")
	run := func(args ...string) Result { t.Helper(); return env.Run(env.HubBin, args...) }
	oneLine := func(r Result, want string) {
		t.Helper()
		msg := strings.TrimSpace(r.Stderr)
		if r.Code == 0 || !strings.Contains(msg, want) || strings.Count(msg, "\n") > 0 {
			t.Errorf("want one line with %q, exit non-zero; got %d:\n%s", want, r.Code, r.Stderr)
		}
	}
	hub1 := filepath.Join(env.Dir, "hub1")
	if r := run("init", "--dir", hub1, "--addr", FreePort(t), "--store", relays); r.Code != 0 {
		t.Fatal(r.Stderr)
	}
	// The authority needs a database of its own.
	oneLine(run("authority", "init", "--dir", filepath.Join(env.Dir, "auth0"), "--hub-dir", hub1, "--store", relays), "needs a database of its own")
	if _, err := os.Stat(filepath.Join(env.Dir, "auth0")); err == nil {
		t.Error("a refused authority init left a directory")
	}
	if r := run("authority", "init", "--dir", filepath.Join(env.Dir, "auth"), "--hub-dir", hub1, "--store", createDB(t, pg, "auth")); r.Code != 0 {
		t.Fatal(r.Stderr)
	}
	// A password in the URL (it would be in argv and config files).
	pw := strings.Replace(relays, "hub@", "hub:hunter2@", 1)
	r := run("init", "--dir", filepath.Join(env.Dir, "hubpw"), "--addr", FreePort(t), "--store", pw)
	oneLine(r, "carries a password")
	if strings.Contains(r.Stderr, "hunter2") {
		t.Error("the password was printed")
	}
	if _, err := os.Stat(filepath.Join(env.Dir, "hubpw")); err == nil {
		t.Error("a refused init left a directory")
	}
	// A relay node that is not listed.
	hub2 := filepath.Join(env.Dir, "hub2")
	run("init", "--dir", hub2, "--addr", FreePort(t), "--key-from", hub1)
	oneLine(run("serve", "--dir", hub2, "--store", relays), "is not listed in the cluster's database")
	// A relay node whose directory holds another key than its listing.
	hub3, stranger := filepath.Join(env.Dir, "hub3"), filepath.Join(env.Dir, "stranger")
	run("init", "--dir", hub3, "--addr", FreePort(t), "--store", relays, "--key-from", hub1)
	run("init", "--dir", stranger, "--addr", FreePort(t))
	os.WriteFile(filepath.Join(hub3, "relay.key"), mustRead(t, filepath.Join(stranger, "relay.key")), 0o600)
	oneLine(run("serve", "--dir", hub3), "but its directory holds key")
	// store migrate lists a relay node; a second migration is refused.
	if r := run("store", "migrate", "--from", hub2, "--to", relays); r.Code != 0 || !strings.Contains(r.Stdout, "is listed there") {
		t.Fatalf("store migrate: %s %s", r.Stdout, r.Stderr)
	}
	oneLine(run("store", "migrate", "--from", hub2, "--to", relays), "already in a database")
	oneLine(run("store", "migrate", "--from", env.Dir, "--to", relays), "neither a relay's directory")
	// A schema newer than this build knows.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, relays)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	conn.Exec(ctx, "update edgeportal_schema set version = 99")
	oneLine(run("serve", "--dir", hub1), "schema version 99, this hub knows versions up to 2")
	var v int
	conn.QueryRow(ctx, "select version from edgeportal_schema").Scan(&v)
	if v != 99 {
		t.Errorf("a refused start changed the schema version to %d", v)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
