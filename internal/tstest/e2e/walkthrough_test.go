// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// examples returns the repository's example config files, with the
// customer inlet's fixed 127.0.0.1:7000 moved to a free loopback port so
// tests can run side by side.
func examples(t *testing.T, env *Env) (saas, customer, customerInlet string) {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	saas = filepath.Join(root, "examples", "saas.yaml")
	b, err := os.ReadFile(filepath.Join(root, "examples", "customer.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	customerInlet = FreePort(t)
	if !strings.Contains(string(b), "127.0.0.1:7000") {
		t.Fatal("examples/customer.yaml no longer listens on 127.0.0.1:7000")
	}
	customer = filepath.Join(env.Dir, "customer.yaml")
	if err := os.WriteFile(customer, []byte(strings.Replace(string(b), "127.0.0.1:7000", customerInlet, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	return saas, customer, customerInlet
}

// walkthrough runs steps 1-3 of the README: hub, SaaS node, customer node.
type walk struct {
	env                    *Env
	hub                    *Hub
	saas, customer         *Node
	saasWeb, githubWeb     string
	customerInlet          string
	saasTicket, acmeTicket string
}

func startWalkthrough(t *testing.T) *walk {
	t.Helper()
	w := &walk{env: NewEnv(t)}
	w.saasWeb = HTTPServer(t, "hello from the SaaS platform\n")
	w.githubWeb = HTTPServer(t, "customer github page\n")
	saasYAML, customerYAML, inletAddr := examples(t, w.env)
	w.customerInlet = inletAddr

	// 1. Vendor: hub and an enroller ticket for the SaaS node.
	w.hub = w.env.NewHub().Start()
	w.saasTicket = w.hub.Ticket("saas.ticket", "--expires-in", "24h", "--usage-count", "1",
		"--attribute", "outlet-to-saas", "--attribute", "inlet-from-saas", "--relay", "saas-relay", "--enroller",
		"--enroller-may-grant", "inlet-to-saas,outlet-from-saas", "--enroller-relays", "acme-*")

	// 2. SaaS node, then a ticket for the customer.
	w.saas = w.env.StartNode("saas", "--config", saasYAML, "--enrollment-ticket", w.saasTicket,
		"--variable", "SAAS_ADDRESS="+w.saasWeb)
	w.saas.AwaitRelayUp()
	r := w.saas.CLI([]string{"ticket", "create"}, "--expires-in", "24h", "--usage-count", "1",
		"--attribute", "inlet-to-saas", "--attribute", "outlet-from-saas", "--relay", "acme-relay")
	if r.Code != 0 {
		t.Fatalf("ticket create on the SaaS node: %s", r.Stderr)
	}
	w.acmeTicket = filepath.Join(w.env.Dir, "acme.ticket")
	os.WriteFile(w.acmeTicket, []byte(r.Stdout), 0o600)

	// 3. Customer node.
	w.customer = w.env.StartNode("customer", "--config", customerYAML, "--enrollment-ticket", w.acmeTicket,
		"--variable", "RELAY=acme-relay", "--variable", "GITHUB_ADDRESS="+w.githubWeb)
	w.customer.AwaitRelayUp()
	return w
}

func TestWalkthrough(t *testing.T) {
	w := startWalkthrough(t)

	// 4. SaaS reaches the customer's GitHub through a CLI-made inlet.
	saasInlet := FreePort(t)
	r := w.saas.CLI([]string{"tcp-inlet", "create"}, "--from", saasInlet, "--via", "acme-relay", "--to", "github")
	if r.Code != 0 {
		t.Fatalf("tcp-inlet create: %s", r.Stderr)
	}
	got, err := Get(saasInlet)
	if err != nil || got != "customer github page\n" {
		t.Fatalf("curl through the SaaS inlet = %q, %v; want the customer's GitHub page", got, err)
	}
	// ... and the customer reaches the SaaS page through its config inlet.
	got, err = Get(w.customerInlet)
	if err != nil || got != "hello from the SaaS platform\n" {
		t.Fatalf("curl through the customer inlet = %q, %v; want the SaaS page", got, err)
	}

	// status --json has what the issue lists.
	st, err := w.customer.Status()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(st.Identifier, "I") || st.Attributes["inlet-to-saas"] != "true" || st.Attributes["outlet-from-saas"] != "true" ||
		st.Enroller || st.Hub != w.hub.Addr || st.Relay.Name != "acme-relay" || !st.Relay.Connected ||
		st.CredentialExpires.Before(time.Now()) || st.Version == "" {
		t.Errorf("customer status = %+v", st)
	}
	if len(st.Outlets) != 1 || st.Outlets[0].Name != "github" || st.Outlets[0].Origin != "config" || st.Outlets[0].Allow != "inlet-from-saas" {
		t.Errorf("customer outlets = %+v", st.Outlets)
	}
	if len(st.Inlets) != 1 || st.Inlets[0].Via != "saas-relay" || st.Inlets[0].To != "saas" || st.Inlets[0].Origin != "config" {
		t.Errorf("customer inlets = %+v", st.Inlets)
	}
	sst, _ := w.saas.Status()
	if !sst.Enroller || len(sst.Inlets) != 1 || sst.Inlets[0].Origin != "cli" || sst.Inlets[0].Allow != "outlet-from-saas" {
		t.Errorf("saas status = %+v", sst)
	}
	plain := w.customer.CLI([]string{"status"})
	if plain.Code != 0 || !strings.Contains(plain.Stdout, "acme-relay, connected") || !strings.Contains(plain.Stdout, "github") {
		t.Errorf("plain status:\n%s%s", plain.Stdout, plain.Stderr)
	}

	// 5. Outlets from the CLI: create, list, reach, delete.
	jira := HTTPServer(t, "jira\n")
	if r := w.customer.CLI([]string{"tcp-outlet", "create"}, "--from", "jira", "--to", jira); r.Code != 0 {
		t.Fatalf("tcp-outlet create: %s", r.Stderr)
	}
	if r := w.customer.CLI([]string{"tcp-outlet", "list"}); !strings.Contains(r.Stdout, "jira") || !strings.Contains(r.Stdout, "cli") {
		t.Errorf("tcp-outlet list:\n%s", r.Stdout)
	}
	jiraInlet := FreePort(t)
	if r := w.saas.CLI([]string{"tcp-inlet", "create"}, "--from", jiraInlet, "--via", "acme-relay", "--to", "jira"); r.Code != 0 {
		t.Fatalf("tcp-inlet create: %s", r.Stderr)
	}
	if got, err := Get(jiraInlet); err != nil || got != "jira\n" {
		t.Fatalf("curl jira = %q, %v", got, err)
	}
	if r := w.customer.CLI([]string{"tcp-outlet", "delete"}, "--from", "jira"); r.Code != 0 {
		t.Fatalf("tcp-outlet delete: %s", r.Stderr)
	}
	if got, err := Get(jiraInlet); err == nil {
		t.Fatalf("jira still reachable after delete: %q", got)
	}
	if r := w.customer.CLI([]string{"tcp-outlet", "delete"}, "--from", "github"); r.Code == 0 || !strings.Contains(r.Stderr, "config file") {
		t.Errorf("deleting a config outlet: code %d, %s", r.Code, r.Stderr)
	}
	if r := w.saas.CLI([]string{"tcp-inlet", "list"}); !strings.Contains(r.Stdout, "acme-relay") {
		t.Errorf("tcp-inlet list:\n%s", r.Stdout)
	}
	if r := w.saas.CLI([]string{"tcp-inlet", "delete"}, "--from", jiraInlet); r.Code != 0 {
		t.Fatalf("tcp-inlet delete: %s", r.Stderr)
	}

	// Members: both nodes listed with their relays.
	r = w.hub.CLI([]string{"members", "list"})
	if r.Code != 0 || strings.Count(r.Stdout, "\nI") != 2 || !strings.Contains(r.Stdout, "acme-relay") || !strings.Contains(r.Stdout, "saas-relay") {
		t.Errorf("members list:\n%s%s", r.Stdout, r.Stderr)
	}

	// A restarted node needs no ticket and says so; CLI outlets survive.
	w.customer.CLI([]string{"tcp-outlet", "create"}, "--from", "jira", "--to", jira)
	w.customer.Restart()
	w.customer.AwaitRelayUp()
	if !strings.Contains(w.customer.Proc.Logs(), "not needed any more") {
		t.Errorf("restarted node did not say the ticket is no longer needed:\n%s", w.customer.Proc.Logs())
	}
	st, _ = w.customer.Status()
	if len(st.Outlets) != 2 {
		t.Errorf("after restart outlets = %+v", st.Outlets)
	}
	if got, err := Get(saasInlet); err != nil || got != "customer github page\n" {
		t.Fatalf("after node restart: %q, %v", got, err)
	}

	// A restarted hub needs no human: nodes reconnect, relays come back.
	w.hub.Proc.Stop()
	w.hub.Start()
	w.customer.AwaitRelayUp()
	w.saas.AwaitRelayUp()
	Await(t, 20*time.Second, "portal after hub restart", func() bool {
		got, err := Get(saasInlet)
		return err == nil && got == "customer github page\n"
	})

	// Revocation closes the member's connections at once; it cannot come back.
	r = w.hub.CLI([]string{"members", "revoke"}, st.Identifier)
	if r.Code != 0 {
		t.Fatalf("members revoke: %s", r.Stderr)
	}
	if code := w.customer.Proc.Wait(t, 15*time.Second); code == 0 {
		t.Errorf("revoked node exited 0")
	}
	if !strings.Contains(w.customer.Proc.Logs(), "revoked") {
		t.Errorf("revoked node did not say why:\n%s", w.customer.Proc.Logs())
	}
	if _, err := Get(saasInlet); err == nil {
		t.Errorf("revoked customer still reachable")
	}
	r = w.hub.CLI([]string{"members", "list"})
	if !strings.Contains(r.Stdout, "revoked") {
		t.Errorf("members list after revoke:\n%s", r.Stdout)
	}
	// Restarting it with the old ticket does not bring it back.
	w.customer.Restart()
	if code := w.customer.Proc.Wait(t, 15*time.Second); code == 0 {
		t.Errorf("revoked node restarted with a used ticket exited 0")
	}
}
