// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package squidtest

import (
	"bufio"
	"encoding/base64"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestMD5Crypt(t *testing.T) {
	// Vectors from `openssl passwd -1 -salt SALT PASSWORD`.
	tests := []struct{ pass, salt, want string }{
		{"password", "xyz", "$1$xyz$cEUv8aN9ehjhMXG/kSFnM1"},
		{"s3cret-Pa55word", "abcdefgh", "$1$abcdefgh$0KKZPKNmdRqHXgh.tlnM9."},
		{"", "a", "$1$a$8CfZSfErbeskipdhZHtvu."},
	}
	for _, tt := range tests {
		if got := md5Crypt(tt.pass, tt.salt); got != tt.want {
			t.Errorf("md5Crypt(%q, %q) = %q, want %q", tt.pass, tt.salt, got, tt.want)
		}
	}
	if _, err := exec.LookPath("openssl"); err == nil {
		salt := randomSalt(t)
		out, err := exec.Command("openssl", "passwd", "-1", "-salt", salt, "a longer password, with spaces").Output()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := md5Crypt("a longer password, with spaces", salt), strings.TrimSpace(string(out)); got != want {
			t.Errorf("md5Crypt = %q, openssl says %q", got, want)
		}
	}
}

// connect sends CONNECT to target through p and returns the status.
func connect(t *testing.T, p *Proxy, target, user, pass string) (int, http.Header) {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	if user != "" {
		req += "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass)) + "\r\n"
	}
	if _, err := c.Write([]byte(req + "\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header
}

func TestStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	p := Start(t, Options{AllowPorts: []int{port}, Users: map[string]string{"u": "p w"}, Realm: "Test Realm"})
	target := "127.0.0.1:" + strconv.Itoa(port)
	if st, h := connect(t, p, target, "", ""); st != 407 || h.Get("Proxy-Authenticate") != `Basic realm="Test Realm"` {
		t.Errorf("no credentials: %d %q", st, h.Get("Proxy-Authenticate"))
	}
	if st, _ := connect(t, p, target, "u", "wrong"); st != 407 {
		t.Errorf("wrong credentials: %d", st)
	}
	if st, _ := connect(t, p, target, "u", "p w"); st != 200 {
		t.Errorf("good credentials: %d", st)
	}
	if st, _ := connect(t, p, "127.0.0.1:1", "u", "p w"); st != 403 {
		t.Errorf("other port: %d", st)
	}
	if !strings.Contains(p.AccessLog(), "CONNECT "+target) {
		t.Errorf("access log lacks the CONNECT:\n%s", p.AccessLog())
	}
	p.Stop()
	if c, err := net.DialTimeout("tcp", p.Addr, time.Second); err == nil {
		c.Close()
		t.Error("squid still listening after Stop")
	}
}
