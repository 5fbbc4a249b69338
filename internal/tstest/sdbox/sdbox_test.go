// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package sdbox

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBox(t *testing.T) {
	b := Start(t, "sdboxtest")
	if st := strings.TrimSpace(b.Exec("systemctl", "is-system-running").Stdout); st != "running" && st != "degraded" {
		t.Fatalf("systemd in the box is %q", st)
	}
	if pid1 := strings.TrimSpace(b.Must("cat", "/proc/1/comm")); pid1 != "systemd" {
		t.Fatalf("PID 1 in the box is %q", pid1)
	}
	t.Run("exit codes and output", func(t *testing.T) {
		r := b.Exec("sh", "-c", "echo out; echo err >&2; exit 7")
		if r.Code != 7 || r.Stdout != "out\n" || r.Stderr != "err\n" {
			t.Fatalf("got %+v", r)
		}
	})
	t.Run("copy in, and nothing leaks out", func(t *testing.T) {
		src := filepath.Join(t.TempDir(), "probe.sh")
		os.WriteFile(src, []byte("#!/bin/sh\necho probe ran\n"), 0o750)
		if err := b.CopyIn(src, "/usr/local/bin/sdbox-probe"); err != nil {
			t.Fatal(err)
		}
		if out := b.Must("/usr/local/bin/sdbox-probe"); out != "probe ran\n" {
			t.Fatalf("probe: %q", out)
		}
		if mode := strings.TrimSpace(b.Must("stat", "-c", "%a", "/usr/local/bin/sdbox-probe")); mode != "750" {
			t.Errorf("mode inside the box: %s", mode)
		}
		if _, err := os.Stat("/usr/local/bin/sdbox-probe"); err == nil {
			t.Fatal("a file copied into the box appeared on this machine")
		}
		b.Must("touch", "/etc/sdbox-written-inside")
		if _, err := os.Stat("/etc/sdbox-written-inside"); err == nil {
			t.Fatal("a write inside the box reached this machine")
		}
	})
	t.Run("a unit runs under the box's systemd", func(t *testing.T) {
		b.Must("systemd-run", "--unit", "sdbox-probe", "--property", "DynamicUser=yes", "--wait", "--collect", "sh", "-c", "id -u > /dev/null")
		r := b.Exec("systemctl", "show", "-p", "Result", "--value", "sdbox-probe")
		if strings.TrimSpace(r.Stdout) == "failed" {
			t.Fatalf("unit failed: %+v", r)
		}
	})
	t.Run("loopback is shared", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				io.WriteString(c, "hello from the host\n")
				c.Close()
			}
		}()
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		out := b.Must("bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/"+port+"; cat <&3")
		if out != "hello from the host\n" {
			t.Fatalf("read %q", out)
		}
	})
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	if r := b.Exec("true"); r.Code == 0 {
		t.Fatal("exec in a stopped box succeeded")
	}
	if _, err := os.Stat(filepath.Join(BaseDir, b.Name)); err == nil {
		t.Fatal("the stopped box's directory is still there")
	}
}

func TestStopStale(t *testing.T) {
	b := Start(t, "sdboxstale")
	// Pretend its owner died: a PID that cannot exist.
	os.WriteFile(filepath.Join(BaseDir, b.Name, ownerFile), []byte("999999999"), 0o600)
	StopStale()
	if _, err := os.Stat(filepath.Join(BaseDir, b.Name)); err == nil {
		t.Fatal("StopStale left a box whose owner is gone")
	}
}
