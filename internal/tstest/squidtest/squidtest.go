// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package squidtest starts a real squid (Debian's squid or squid-openssl,
// 5.x) on 127.0.0.1 with a random port for tests of the node's egress: a
// forward proxy that allows only CONNECT to the ports a test names,
// optionally with Basic authentication (squid's basic_ncsa_auth with a
// password file written here) and optionally with TLS interception
// (ssl-bump with a CA made for the test), as a corporate proxy would.
//
// Started as root, squid drops to the "proxy" user, so its directory
// (made under the system temp dir, not the test's 0700 one) and files
// belong to that user. When squid is missing, Start installs
// squid-openssl with apt-get if it runs as root, else it skips the test
// naming the package; under CI (CI set) a missing squid fails instead, so
// a setup script that forgot it does not turn into silent skips.
//
// Only _test.go files import it.
package squidtest

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgeportal/connect/internal/tstest/certtest"
)

// Package is the Debian package the harness installs and asks for: squid
// built with OpenSSL, which does plain CONNECT and ssl-bump (it conflicts
// with the GnuTLS "squid" package, which does only the former).
const Package = "squid-openssl"

// Limits.
const (
	startTimeout   = 30 * time.Second
	stopTimeout    = 15 * time.Second
	installTimeout = 5 * time.Minute
)

// Options says what the proxy allows.
type Options struct {
	// AllowPorts are the ports CONNECT may reach; CONNECT to any other
	// port is refused with 403. Required.
	AllowPorts []int
	// Users, when non-nil, makes the proxy require Basic authentication
	// with one of these user → password pairs.
	Users map[string]string
	// Realm is the Basic realm ("" means "squidtest proxy").
	Realm string
	// Bump intercepts TLS inside CONNECT (ssl-bump: peek, stare, bump)
	// and re-signs it with a CA made for the test (Proxy.CA). The
	// intercepted requests must be WebSocket upgrades to an allowed port.
	Bump bool
	// NoUpgrade leaves squid's default for HTTP upgrades when bumping: it
	// strips the Upgrade header, so the upgrade inside TLS fails.
	NoUpgrade bool
	// UpstreamCA is the PEM CA bundle squid verifies the hub's
	// certificate with when bumping; nil: squid does not verify it.
	UpstreamCA []byte
}

// Proxy is a running squid.
type Proxy struct {
	Addr   string       // 127.0.0.1:port
	CA     *certtest.CA // the intercepting CA (Bump only)
	CAFile string       // its certificate, PEM (Bump only)

	dir     string
	cmd     *exec.Cmd
	exited  chan struct{} // closed when squid has exited
	waitErr error         // set before exited is closed
	stop    sync.Once
}

var instances atomic.Int64

// Start starts squid with o and stops it at test end. It skips the test
// when squid is missing and cannot be installed, and when o.Bump asks for
// ssl-bump from a squid built without OpenSSL.
func Start(t testing.TB, o Options) *Proxy {
	t.Helper()
	if len(o.AllowPorts) == 0 {
		t.Fatal("squidtest: Options.AllowPorts is empty")
	}
	bin := findSquid(t)
	if o.Bump {
		out, _ := exec.Command(bin, "-v").CombinedOutput()
		if !bytes.Contains(out, []byte("--with-openssl")) {
			skipOrFail(t, "squid at "+bin+" is built without OpenSSL, so it cannot ssl-bump; install "+Package)
		}
	}
	libexec := filepath.Join(filepath.Dir(filepath.Dir(bin)), "lib", "squid")
	dir, err := os.MkdirTemp("", "squidtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	p := &Proxy{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, exited: make(chan struct{})}

	var conf strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&conf, format+"\n", a...) }
	if o.Bump {
		p.CA = certtest.NewRSACA(t, "squidtest Inspecting CA")
		p.CAFile = certtest.WriteFile(t, dir, "ca.pem", p.CA.CertPEM, 0o644)
		certtest.WriteFile(t, dir, "ca.key", p.CA.KeyPEM, 0o600)
		db := filepath.Join(dir, "ssl_db")
		if out, err := exec.Command(filepath.Join(libexec, "security_file_certgen"), "-c", "-s", db, "-M", "4MB").CombinedOutput(); err != nil {
			t.Fatalf("squidtest: security_file_certgen -c: %v\n%s", err, out)
		}
		w("http_port %s ssl-bump tls-cert=%s/ca.pem tls-key=%s/ca.key generate-host-certificates=on dynamic_cert_mem_cache_size=4MB", p.Addr, dir, dir)
		w("sslcrtd_program %s -s %s -M 4MB", filepath.Join(libexec, "security_file_certgen"), db)
		w("sslcrtd_children 2 startup=1 idle=1")
		w("acl step1 at_step SslBump1")
		w("acl step2 at_step SslBump2")
		w("ssl_bump peek step1")
		w("ssl_bump stare step2")
		w("ssl_bump bump all")
		if o.UpstreamCA != nil {
			certtest.WriteFile(t, dir, "upstream.pem", o.UpstreamCA, 0o644)
			w("tls_outgoing_options cafile=%s/upstream.pem", dir)
		} else {
			w("tls_outgoing_options flags=DONT_VERIFY_PEER")
		}
		if !o.NoUpgrade {
			w("http_upgrade_request_protocols websocket allow all")
		}
	} else {
		w("http_port %s", p.Addr)
	}
	w("pid_filename %s/squid.pid", dir)
	w("cache_log %s/cache.log", dir)
	w("access_log stdio:%s/access.log", dir)
	w("coredump_dir %s", dir)
	w("pinger_enable off")
	w("shutdown_lifetime 0 seconds")
	w("visible_hostname squidtest")
	w("cache deny all")
	ports := make([]string, len(o.AllowPorts))
	for i, pt := range o.AllowPorts {
		ports[i] = strconv.Itoa(pt)
	}
	w("acl hub_ports port %s", strings.Join(ports, " "))
	w("acl CONNECT method CONNECT")
	w("http_access deny CONNECT !hub_ports")
	authed := ""
	if o.Users != nil {
		realm := o.Realm
		if realm == "" {
			realm = "squidtest proxy"
		}
		var pw strings.Builder
		for u, pass := range o.Users {
			fmt.Fprintf(&pw, "%s:%s\n", u, md5Crypt(pass, randomSalt(t)))
		}
		certtest.WriteFile(t, dir, "passwd", []byte(pw.String()), 0o600)
		w("auth_param basic program %s %s/passwd", filepath.Join(libexec, "basic_ncsa_auth"), dir)
		w("auth_param basic realm %s", realm)
		w("auth_param basic children 2 startup=1 idle=1")
		w("acl authed proxy_auth REQUIRED")
		authed = " authed"
	}
	w("http_access allow CONNECT hub_ports%s", authed)
	if o.Bump {
		w("http_access allow hub_ports%s", authed) // the requests inside bumped tunnels
	}
	w("http_access deny all")
	certtest.WriteFile(t, dir, "squid.conf", []byte(conf.String()), 0o644)
	chownTree(t, dir)

	name := fmt.Sprintf("sqt%d%d", os.Getpid(), instances.Add(1))
	p.cmd = exec.Command(bin, "-N", "-n", name, "-f", filepath.Join(dir, "squid.conf"))
	var out bytes.Buffer
	p.cmd.Stdout, p.cmd.Stderr = &out, &out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("squidtest: start %s: %v", bin, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(p.Stop)
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := net.DialTimeout("tcp", p.Addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-p.exited:
			t.Fatalf("squidtest: squid exited at start (%v):\n%s\n%s", p.waitErr, out.String(), p.tail("cache.log"))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("squidtest: squid not listening on %s after %v:\n%s", p.Addr, startTimeout, p.tail("cache.log"))
		}
	}
	return p
}

// Stop stops squid and waits until it has exited (and released its
// port). Later calls do nothing.
func (p *Proxy) Stop() {
	p.stop.Do(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(stopTimeout):
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
}

// AccessLog returns squid's access log so far (one line per request).
func (p *Proxy) AccessLog() string { return p.tail("access.log") }

func (p *Proxy) tail(name string) string {
	b, _ := os.ReadFile(filepath.Join(p.dir, name))
	const max = 8 << 10
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

var (
	installOnce sync.Once
	installErr  error
)

// Installed reports whether squid is installed (Start would not need to
// install it).
func Installed() bool { return look() != "" }

func look() string {
	if p, err := exec.LookPath("squid"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/squid"); err == nil {
		return "/usr/sbin/squid"
	}
	return ""
}

func findSquid(t testing.TB) string {
	t.Helper()
	if p := look(); p != "" {
		return p
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "squid is not installed and this test is not root, so it cannot install it: apt-get install "+Package)
	}
	installOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), installTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=120", Package)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			installErr = fmt.Errorf("apt-get install %s: %v: %s", Package, err, lastLine(out))
		}
	})
	if p := look(); p != "" {
		return p
	}
	skipOrFail(t, fmt.Sprintf("squid is not installed and installing it failed (%v)", installErr))
	return ""
}

// skipOrFail skips with reason, or fails under CI, where the setup
// script must have installed squid.
func skipOrFail(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("squidtest: %s (CI is set: the CI setup must install %s)", reason, Package)
	}
	t.Skip("squidtest: " + reason)
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// chownTree gives dir to the proxy user when running as root (squid drops
// to it and must read its config and write its logs).
func chownTree(t testing.TB, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	u, err := user.Lookup("proxy")
	if err != nil {
		t.Fatalf("squidtest: running as root but there is no proxy user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	err = filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func randomSalt(t testing.TB) string {
	t.Helper()
	const chars = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = chars[int(b[i])%len(chars)]
	}
	return string(b[:])
}

// md5Crypt is the "$1$" MD5-based crypt(3) (Poul-Henning Kamp's), which
// squid's basic_ncsa_auth accepts; it keeps the harness free of
// htpasswd/openssl. Test passwords only.
func md5Crypt(password, salt string) string {
	const magic = "$1$"
	const itoa64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	if len(salt) > 8 {
		salt = salt[:8]
	}
	pw, sl := []byte(password), []byte(salt)
	alt := md5.New()
	alt.Write(pw)
	alt.Write(sl)
	alt.Write(pw)
	altSum := alt.Sum(nil)
	h := md5.New()
	h.Write(pw)
	h.Write([]byte(magic))
	h.Write(sl)
	for i := len(pw); i > 0; i -= 16 {
		h.Write(altSum[:min(i, 16)])
	}
	for i := len(pw); i > 0; i >>= 1 {
		if i&1 != 0 {
			h.Write([]byte{0})
		} else {
			h.Write(pw[:1])
		}
	}
	final := h.Sum(nil)
	for i := range 1000 {
		c := md5.New()
		if i&1 != 0 {
			c.Write(pw)
		} else {
			c.Write(final)
		}
		if i%3 != 0 {
			c.Write(sl)
		}
		if i%7 != 0 {
			c.Write(pw)
		}
		if i&1 != 0 {
			c.Write(final)
		} else {
			c.Write(pw)
		}
		final = c.Sum(nil)
	}
	var out []byte
	enc := func(a, b, c byte, n int) {
		v := uint(a)<<16 | uint(b)<<8 | uint(c)
		for ; n > 0; n-- {
			out = append(out, itoa64[v&0x3f])
			v >>= 6
		}
	}
	enc(final[0], final[6], final[12], 4)
	enc(final[1], final[7], final[13], 4)
	enc(final[2], final[8], final[14], 4)
	enc(final[3], final[9], final[15], 4)
	enc(final[4], final[10], final[5], 4)
	enc(0, 0, final[11], 2)
	return magic + salt + "$" + string(out)
}
