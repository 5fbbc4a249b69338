// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeportal/connect/internal/tstest/certtest"
	"github.com/edgeportal/connect/internal/tstest/squidtest"
)

const (
	proxyUser     = "acme-svc"
	proxyPassword = "corr3ct-h0rse-battery"
	proxyRealm    = "Acme Corporate Proxy"
)

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// startBehindProxy starts a vendor node that reaches the hub directly and
// a customer node (outlet web → target) whose every hub connection goes
// through the proxy its config names, with hubExtra appended to its hub
// section and hubAddr (if not "") instead of the ticket's address.
func startBehindProxy(t *testing.T, env *Env, h *Hub, target, hubSection, hubAddr string) *pair {
	t.Helper()
	p := &pair{env: env, hub: h}
	vt := h.Ticket("vendor.ticket", "--attribute", "inlet-from-saas", "--relay", "saas-relay")
	ct := h.Ticket("customer.ticket", "--attribute", "outlet-from-saas", "--relay", "acme-relay")
	ccfg := writeFile(t, env, "customer.yaml", outletYAML(outletItem("web", target, "inlet-from-saas"))+hubSection)
	vcfg := writeFile(t, env, "vendor.yaml", "policy:\n  resource-type: tcp-inlet\n  allow: outlet-from-saas\n")
	cargs := []string{"--enrollment-ticket", ct, "--config", ccfg}
	if hubAddr != "" {
		cargs = append(cargs, "--hub", hubAddr)
	}
	p.vendor = env.StartNode("vendor", "--enrollment-ticket", vt, "--config", vcfg)
	p.customer = env.StartNode("customer", cargs...)
	p.vendor.AwaitRelayUp()
	p.customer.AwaitRelayUp()
	return p
}

// TestEgressThroughProxy is the walk-through with the customer's node
// behind a real squid that allows only CONNECT to the hub's port, with
// Basic authentication: enrollment, the relay and the portal's channel
// all go through it; wrong credentials and a proxy that is down each get
// their own message (install's preflight and doctor), nothing is
// changed, no password is shown; the vendor's direct path still works.
func TestEgressThroughProxy(t *testing.T) {
	env := NewEnv(t)
	h := env.NewHub().Start()
	sq := squidtest.Start(t, squidtest.Options{AllowPorts: []int{portOf(t, h.Addr)}, Users: map[string]string{proxyUser: proxyPassword}, Realm: proxyRealm})
	good := writeFile(t, env, "proxy-auth", proxyUser+":"+proxyPassword+"\n")
	bad := writeFile(t, env, "bad-proxy-auth", proxyUser+":not-the-password\n")
	web := HTTPServer(t, "through the proxy\n")

	p := startBehindProxy(t, env, h, web, "hub:\n  proxy: http://"+sq.Addr+"\n  proxy-auth-file: "+good+"\n", "")
	if got, err := Get(p.inlet(t, "web")); err != nil || got != "through the proxy\n" {
		t.Fatalf("portal to a node behind the proxy: %q %v", got, err)
	}
	// squid logs a tunnel when it ends: the enrollment's has.
	Await(t, 10*time.Second, "squid to log the customer's tunnel to the hub", func() bool {
		return strings.Contains(sq.AccessLog(), "CONNECT "+h.Addr+" "+proxyUser)
	})
	// Enrollment, the control connection and the channel all went through
	// it; the vendor dialled directly.
	if n := strings.Count(p.customer.Proc.Logs(), `msg="dialing hub through proxy"`); n < 3 {
		t.Errorf("the customer dialled the hub through the proxy %d times, want 3 (enrollment, control, channel)", n)
	}
	if strings.Contains(p.vendor.Proc.Logs(), "through proxy") {
		t.Error("the vendor went through the proxy")
	}
	for _, n := range []*Node{p.customer, p.vendor} {
		if strings.Contains(n.Proc.Logs(), proxyPassword) {
			t.Fatalf("%s's log holds the proxy password", n.Proc.Name)
		}
	}
	doctor := func(n *Node) Result {
		return n.CLI([]string{"doctor"}, "--config", filepath.Join(env.Dir, n.Proc.Name+".yaml"))
	}
	r := doctor(p.customer)
	if r.Code != 0 || !strings.Contains(r.Stdout, "via proxy http://"+sq.Addr) || !strings.Contains(r.Stdout, "Basic auth from "+good) {
		t.Errorf("doctor through the proxy: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	// install --proxy: wrong credentials and a proxy that is down are
	// refused by the preflight, each with its own one-line message; the
	// ticket stays unused and nothing is created.
	spare := h.Ticket("spare.ticket", "--attribute", "outlet-from-saas")
	inst := filepath.Join(env.Dir, "installed")
	down := FreePort(t)
	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"wrong credentials", []string{"--proxy", "http://" + sq.Addr, "--proxy-auth-file", bad},
			[]string{"preflight:", "proxy " + sq.Addr + " refused CONNECT to " + h.Addr + " with 407", `(realm "` + proxyRealm + `")`, "it refused the credentials from " + bad}},
		{"no credentials", []string{"--proxy", "http://" + sq.Addr},
			[]string{"with 407", "no credentials were sent; put user:password in a proxy-auth-file"}},
		{"proxy down", []string{"--proxy", "http://" + down, "--proxy-auth-file", good},
			[]string{"preflight:", "proxy " + down + " unreachable", "connection refused"}},
		{"credentials in the URL", []string{"--proxy", "http://" + proxyUser + ":" + proxyPassword + "@" + sq.Addr},
			[]string{"hub route: proxy: the URL holds credentials"}},
	} {
		r := env.Agent(append([]string{"install", "--user", "--state-dir", inst, "--ticket", spare, "--dry-run"}, c.args...)...)
		msg := strings.TrimSpace(r.Stderr)
		if r.Code != 1 || strings.Contains(msg, "\n") {
			t.Errorf("%s: exit %d, want 1 and one line:\n%s", c.name, r.Code, r.Stderr)
		}
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: %q lacks %q", c.name, msg, w)
			}
		}
		if strings.Contains(msg, proxyPassword) {
			t.Errorf("%s: the error shows the password: %s", c.name, msg)
		}
		if _, err := os.Stat(inst); err == nil {
			t.Fatalf("%s: a refused install created %s", c.name, inst)
		}
	}
	r = env.Agent("install", "--user", "--state-dir", inst, "--ticket", spare, "--dry-run", "--proxy", "http://"+sq.Addr, "--proxy-auth-file", good)
	if r.Code != 0 || !strings.Contains(r.Stdout, "through proxy "+sq.Addr) || !strings.Contains(r.Stdout, "hub-route.json") || !strings.Contains(r.Stdout, "proxy-auth") {
		t.Errorf("install --dry-run through the proxy: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	// The proxy goes down: doctor names it; the vendor's direct path is
	// unaffected.
	sq.Stop()
	r = doctor(p.customer)
	if r.Code == 0 || !strings.Contains(r.Stdout, "FAIL proxy") || !strings.Contains(r.Stdout, "proxy "+sq.Addr+" unreachable") {
		t.Errorf("doctor with the proxy down: %d\n%s", r.Code, r.Stdout)
	}
	if st, err := p.vendor.Status(); err != nil || !st.HubConnected || !st.Relay.Connected {
		t.Errorf("the direct node: %+v %v", st, err)
	}
}

// TestEgressTLS: a relay that also serves TLS on its port (serve
// --tls-cert: the authority and the vendor's node still connect plain)
// and a node that reaches it as TLS through a CONNECT proxy; then through
// a TLS-inspecting proxy (squid's ssl-bump) whose CA the node is given:
// doctor says the outer TLS is re-signed, and the pinned Noise key still
// decides.
func TestEgressTLS(t *testing.T) {
	ca := certtest.NewCA(t, "Vendor Hub CA")
	leaf := ca.Leaf(t, "127.0.0.1")
	certDir := t.TempDir()
	cert := certtest.WriteFile(t, certDir, "hub.crt", leaf.CertPEM, 0o644)
	key := certtest.WriteFile(t, certDir, "hub.key", leaf.KeyPEM, 0o600)
	caFile := certtest.WriteFile(t, certDir, "hub-ca.pem", ca.CertPEM, 0o644)
	web := HTTPServer(t, "inside TLS\n")

	t.Run("through a CONNECT proxy", func(t *testing.T) {
		env := NewEnv(t)
		h := env.NewHub().Start("--tls-cert", cert, "--tls-key", key)
		sq := squidtest.Start(t, squidtest.Options{AllowPorts: []int{portOf(t, h.Addr)}})
		p := startBehindProxy(t, env, h, web, "hub:\n  proxy: http://"+sq.Addr+"\n  tls: true\n  ca-file: "+caFile+"\n", "")
		if got, err := Get(p.inlet(t, "web")); err != nil || got != "inside TLS\n" {
			t.Fatalf("portal: %q %v", got, err)
		}
		if !strings.Contains(p.customer.Proc.Logs(), `msg="dialing hub through proxy"`) {
			t.Error("the customer did not go through the proxy")
		}
		r := p.customer.CLI([]string{"doctor"}, "--config", filepath.Join(env.Dir, "customer.yaml"))
		if r.Code != 0 || !strings.Contains(r.Stdout, "TLS (ALPN") || !strings.Contains(r.Stdout, `issued by "CN=Vendor Hub CA`) {
			t.Errorf("doctor: %d\n%s", r.Code, r.Stdout)
		}
	})
	t.Run("through a TLS-inspecting proxy", func(t *testing.T) {
		env := NewEnv(t)
		h := env.NewHub().Start("--tls-cert", cert, "--tls-key", key)
		sq := squidtest.Start(t, squidtest.Options{AllowPorts: []int{portOf(t, h.Addr)}, Bump: true, UpstreamCA: ca.CertPEM})
		p := startBehindProxy(t, env, h, web, "hub:\n  proxy: http://"+sq.Addr+"\n  tls: true\n  ca-file: "+sq.CAFile+"\n", "")
		if got, err := Get(p.inlet(t, "web")); err != nil || got != "inside TLS\n" {
			t.Fatalf("portal through an inspecting proxy: %q %v", got, err)
		}
		r := p.customer.CLI([]string{"doctor"}, "--config", filepath.Join(env.Dir, "customer.yaml"))
		if r.Code != 0 || !strings.Contains(r.Stdout, "trusted only through ca-file: the outer TLS is re-signed by") {
			t.Errorf("doctor does not say the outer TLS is inspected: %d\n%s", r.Code, r.Stdout)
		}
	})
}
