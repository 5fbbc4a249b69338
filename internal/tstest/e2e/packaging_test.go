// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeportal/connect/internal/tstest/sdbox"
)

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func mustContain(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, got)
		}
	}
}

// TestPackages builds every package with scripts/package.sh for the
// default brand and for a second one, and inspects them with the distro
// tools.
func TestPackages(t *testing.T) {
	root, _ := moduleRoot()
	for _, tool := range []string{"dpkg-deb", "rpm", "rpm2cpio", "cpio", "msiinfo", "msiextract", "wixl", "systemd-analyze"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: scripts/test.sh installs it", tool)
		}
	}
	for _, b := range []struct{ brand, display, maintainer, version string }{
		{"initech", "", "", "v1.4.0"},
		{"globex", "Globex Agent", "Globex Packaging <packages@globex.test>", "v1.2.3"},
	} {
		t.Run(b.brand, func(t *testing.T) {
			env := []string{"BRAND=" + b.brand, "VERSION=" + b.version, "BRAND_MAINTAINER=" + b.maintainer}
			if b.display != "" {
				env = append(env, "BRAND_DISPLAY="+b.display)
			}
			maintainer := b.maintainer
			if maintainer == "" {
				maintainer = "Initech Support <support@initech.example>"
			}
			run(t, root, env, "scripts/package.sh")
			dist := filepath.Join(root, "dist")
			v := strings.TrimPrefix(b.version, "v")
			name := b.brand + "-agent"
			for _, f := range []string{
				name + "_" + v + "_amd64.deb", name + "_" + v + "_arm64.deb",
				name + "_" + v + "_amd64.rpm", name + "_" + v + "_arm64.rpm",
				name + "_" + v + "_windows_amd64.msi",
				b.brand + "-hub_" + v + "_amd64.deb", b.brand + "-hub_" + v + "_arm64.deb",
				b.brand + "-hub_" + v + "_amd64.rpm", b.brand + "-hub_" + v + "_arm64.rpm",
			} {
				if _, err := os.Stat(filepath.Join(dist, f)); err != nil {
					t.Fatalf("missing package %s", f)
				}
			}
			sums, _ := os.ReadFile(filepath.Join(dist, "checksums.txt"))
			for _, p := range []string{"linux_amd64", "linux_arm64", "darwin_amd64", "darwin_arm64", "windows_amd64", "windows_arm64"} {
				mustContain(t, "checksums.txt", string(sums), name+"_"+v+"_"+p, b.brand+"-hub_"+v+"_"+p)
			}
			mustContain(t, "checksums.txt", string(sums), ".msi", ".deb", ".rpm")

			deb := filepath.Join(dist, name+"_"+v+"_amd64.deb")
			info := run(t, dist, nil, "dpkg-deb", "-I", deb)
			mustContain(t, "dpkg-deb -I", info, "Package: "+name, "Version: "+v, "Maintainer: "+maintainer, "postinst", "prerm", "postrm", "preinst")
			if strings.Contains(info, "example.invalid") {
				t.Errorf("the package names example.invalid:\n%s", info)
			}
			list := run(t, dist, nil, "dpkg-deb", "-c", deb)
			mustContain(t, "dpkg-deb -c", list,
				"-rwxr-xr-x root/root", "./usr/bin/"+name,
				"-rw-r--r-- root/root", "./usr/lib/systemd/system/"+name+".service",
				"drwx------ root/root", "./var/lib/"+name+"/",
				"./usr/lib/"+name+"/packaged")
			rpmFile := filepath.Join(dist, name+"_"+v+"_amd64.rpm")
			mustContain(t, "rpm -qpi", run(t, dist, nil, "rpm", "-qpi", rpmFile), "Name        : "+name, "Version     : "+v)
			mustContain(t, "rpm -qpl", run(t, dist, nil, "rpm", "-qpl", rpmFile), "/usr/bin/"+name, "/usr/lib/systemd/system/"+name+".service", "/var/lib/"+name)
			mustContain(t, "rpm --scripts", run(t, dist, nil, "rpm", "-qp", "--scripts", rpmFile),
				"useradd --system", "systemctl enable --now "+name+".service", "systemctl try-restart", "disable --now")

			// Install the .deb into a scratch root: the expected tree, and a unit that verifies.
			scratch := t.TempDir()
			run(t, dist, nil, "dpkg-deb", "-x", deb, scratch)
			run(t, dist, nil, "dpkg-deb", "-e", deb, filepath.Join(scratch, "DEBIAN"))
			unit, err := os.ReadFile(filepath.Join(scratch, "usr/lib/systemd/system", name+".service"))
			if err != nil {
				t.Fatal(err)
			}
			mustContain(t, "unit", string(unit), "ExecStart=/usr/bin/"+name+" run --state-dir /var/lib/"+name+" --wait-for-ticket",
				"User="+name, "NoNewPrivileges=yes", "ProtectSystem=strict", "RestartSec=2s", "SuccessExitStatus=75")
			if strings.Contains(string(unit), "man:") {
				t.Errorf("the unit cites a man page the package does not ship:\n%s", unit)
			}
			out, err := exec.Command("systemd-analyze", "verify", "--recursive-errors=no", "--man=no", "--generators=no",
				"--root="+scratch, "/usr/lib/systemd/system/"+name+".service").CombinedOutput()
			if err != nil {
				t.Errorf("systemd-analyze verify: %v\n%s", err, out)
			}
			// The hub's package: its own account and hardened unit.
			hubName := b.brand + "-hub"
			hubDeb := filepath.Join(dist, hubName+"_"+v+"_amd64.deb")
			mustContain(t, "hub dpkg-deb -I", run(t, dist, nil, "dpkg-deb", "-I", hubDeb), "Package: "+hubName, "Version: "+v, "Maintainer: "+maintainer, "postinst", "preinst")
			mustContain(t, "hub dpkg-deb -c", run(t, dist, nil, "dpkg-deb", "-c", hubDeb), "./usr/bin/"+hubName, "./usr/lib/systemd/system/"+hubName+".service", "drwx------ root/root", "./var/lib/"+hubName+"/")
			run(t, dist, nil, "dpkg-deb", "-x", hubDeb, scratch)
			hubUnit, err := os.ReadFile(filepath.Join(scratch, "usr/lib/systemd/system", hubName+".service"))
			if err != nil {
				t.Fatal(err)
			}
			mustContain(t, "hub unit", string(hubUnit), "ExecStart=/usr/bin/"+hubName+" serve --dir /var/lib/"+hubName, "User="+hubName,
				"ProtectSystem=strict", "NoNewPrivileges=yes", "ConditionPathExists=/var/lib/"+hubName+"/hub.json")
			out, err = exec.Command("systemd-analyze", "verify", "--recursive-errors=no", "--man=no", "--generators=no",
				"--root="+scratch, "/usr/lib/systemd/system/"+hubName+".service").CombinedOutput()
			if err != nil {
				t.Errorf("systemd-analyze verify (hub): %v\n%s", err, out)
			}
			mustContain(t, "hub rpm -qpi", run(t, dist, nil, "rpm", "-qpi", filepath.Join(dist, hubName+"_"+v+"_amd64.rpm")), "Name        : "+hubName, "Version     : "+v)

			bin := filepath.Join(scratch, "usr/bin", name)
			mustContain(t, "version", run(t, dist, nil, bin, "version"), name+" "+b.version)
			display := b.display
			if display == "" {
				display = "Initech Agent"
			}
			mustContain(t, "help", run(t, dist, nil, bin, "help"), display)

			// The MSI's tables.
			msi := filepath.Join(dist, name+"_"+v+"_windows_amd64.msi")
			tables := run(t, dist, nil, "msiinfo", "tables", msi)
			mustContain(t, "msiinfo tables", tables, "File", "Component", "ServiceInstall", "ServiceControl", "CustomAction")
			mustContain(t, "ServiceInstall", run(t, dist, nil, "msiinfo", "export", msi, "ServiceInstall"), name, display, "run --wait-for-ticket", "LocalSystem")
			mustContain(t, "ServiceControl", run(t, dist, nil, "msiinfo", "export", msi, "ServiceControl"), name)
			mustContain(t, "File", run(t, dist, nil, "msiinfo", "export", msi, "File"), name+".exe")
			mustContain(t, "CustomAction", run(t, dist, nil, "msiinfo", "export", msi, "CustomAction"), "install --packaged --ticket \"[TICKET_FILE]\"")

			if b.brand == "initech" {
				return
			}
			// White label: nothing in the brand's packages says initech.
			rpmDir := t.TempDir()
			cmd := exec.Command("sh", "-c", "rpm2cpio "+rpmFile+" | cpio -idm --quiet")
			cmd.Dir = rpmDir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("rpm2cpio: %v %s", err, out)
			}
			os.WriteFile(filepath.Join(rpmDir, "scripts.txt"), []byte(run(t, dist, nil, "rpm", "-qp", "--scripts", "-i", rpmFile)), 0o600)
			msiDir := t.TempDir()
			run(t, msiDir, nil, "msiextract", "-C", msiDir, msi)
			for _, tbl := range []string{"ServiceInstall", "Property", "Directory", "CustomAction", "File", "_SummaryInformation"} {
				os.WriteFile(filepath.Join(msiDir, tbl+".idt"), []byte(run(t, dist, nil, "msiinfo", "export", msi, tbl)), 0o600)
			}
			for _, dir := range []string{scratch, rpmDir, msiDir} {
				out, _ := exec.Command("grep", "-ril", "initech", dir).CombinedOutput()
				if s := strings.TrimSpace(string(out)); s != "" {
					t.Errorf("the %s packages mention initech in:\n%s", b.brand, s)
				}
			}
		})
	}
}

// buildPackages runs scripts/package.sh for the default brand at version
// and copies the linux/amd64 agent and hub packages out of dist/.
func buildPackages(t *testing.T, version string) (agentDeb, agentRPM, hubDeb string) {
	t.Helper()
	root, _ := moduleRoot()
	run(t, root, []string{"BRAND=initech", "VERSION=" + version, "BRAND_MAINTAINER=Initech Test <packages@initech.test>", "SINGLE_TARGET=1"}, "scripts/package.sh")
	v := strings.TrimPrefix(version, "v")
	dir := t.TempDir()
	cp := func(name string) string {
		b, err := os.ReadFile(filepath.Join(root, "dist", name))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o644)
		return p
	}
	return cp("initech-agent_" + v + "_amd64.deb"), cp("initech-agent_" + v + "_amd64.rpm"), cp("initech-hub_" + v + "_amd64.deb")
}

// TestSystemdPackages installs the built packages on a real systemd: the
// .deb makes the account and an idle service, `install --ticket` enrolls
// it, an upgrade keeps the identity and restarts it, `apt-get remove`
// stops it, `dpkg --purge` removes its state; the hub's .deb runs the hub
// the agent enrolls with; the .rpm does the same on rpm -i --nodeps.
func TestSystemdPackages(t *testing.T) {
	for _, tool := range []string{"dpkg-deb", "rpm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: scripts/test.sh installs it", tool)
		}
	}
	if err := sdbox.Available(); err != nil {
		t.Skipf("no systemd box: %v", err)
	}
	deb14, rpm14, hubDeb := buildPackages(t, "v1.4.0")
	deb15, _, _ := buildPackages(t, "v1.5.0")

	b := sdbox.Start(t, "deb")
	for host, box := range map[string]string{deb14: "/root/agent-1.4.0.deb", deb15: "/root/agent-1.5.0.deb", rpm14: "/root/agent-1.4.0.rpm", hubDeb: "/root/hub.deb"} {
		if err := b.CopyIn(host, box); err != nil {
			t.Fatal(err)
		}
	}
	a := &boxAgent{t: t, box: b, bin: "/usr/bin/initech-agent", state: "/var/lib/initech-agent"}

	// The vendor's hub from its package, initialised as its account.
	b.Must("dpkg", "-i", "/root/hub.deb")
	b.Must("id", "initech-hub")
	if st := a.systemctl("is-active", "initech-hub"); st == "active" {
		t.Fatal("the hub runs before it was initialised")
	}
	hubAddr := FreePort(t)
	b.Must("runuser", "-u", "initech-hub", "--", "initech-hub", "init", "--dir", "/var/lib/initech-hub", "--addr", hubAddr)
	b.Must("runuser", "-u", "initech-hub", "--", "initech-hub", "authority", "init", "--dir", "/var/lib/initech-hub-authority", "--hub-dir", "/var/lib/initech-hub")
	b.Must("systemctl", "start", "initech-hub", "initech-hub-authority")
	Await(t, 20*time.Second, "the packaged hub listening on "+hubAddr, func() bool {
		c, err := net.DialTimeout("tcp", hubAddr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	hubTicket := func() string {
		b.Exec("rm", "-f", "/root/t.ticket")
		b.Must("runuser", "-u", "initech-hub", "--", "initech-hub", "ticket", "create", "--dir", "/var/lib/initech-hub-authority", "--relay", "acme-relay", "--out", "/tmp/t.ticket")
		b.Must("mv", "/tmp/t.ticket", "/root/t.ticket")
		return "/root/t.ticket"
	}

	// dpkg -i: the account and an idle service waiting for a ticket.
	b.Must("dpkg", "-i", "/root/agent-1.4.0.deb")
	b.Must("id", "initech-agent")
	if st := a.systemctl("is-active", "initech-agent"); st != "active" {
		t.Fatalf("after dpkg -i the service is %s", st)
	}
	Await(t, 20*time.Second, "the idle service to wait for a ticket", func() bool {
		return strings.Contains(a.journal(), "waiting for an enrollment ticket")
	})

	// install --ticket: enrolled, through the package's own unit.
	out := a.must("install", "--ticket", hubTicket())
	mustContain(t, "install", out, "packaged", "relay        acme-relay connected")
	st, err := a.status()
	if err != nil || st.Version != "v1.4.0" {
		t.Fatalf("after install: %+v %v", st, err)
	}
	id, pid := st.Identifier, a.mainPID()

	// Upgrade: same identity, restarted into the new version.
	b.Must("dpkg", "-i", "/root/agent-1.5.0.deb")
	a.awaitUp(30*time.Second, "v1.5.0")
	if st, _ := a.status(); st.Identifier != id {
		t.Fatalf("the upgrade changed the identity: %s → %s", id, st.Identifier)
	}
	if a.mainPID() == pid {
		t.Error("the upgrade did not restart the service")
	}

	// apt-get remove stops it and keeps the identity; purge removes it.
	b.Must("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "remove", "-y", "-qq", "initech-agent")
	if st := a.systemctl("is-active", "initech-agent"); st == "active" {
		t.Fatal("the service runs after apt-get remove")
	}
	b.Must("test", "-f", a.state+"/node.key")
	b.Must("dpkg", "--purge", "initech-agent")
	if r := b.Exec("test", "-e", a.state); r.Code == 0 {
		t.Fatal("dpkg --purge left the state directory")
	}
	if r := b.Exec("id", "initech-agent"); r.Code == 0 {
		t.Error("dpkg --purge left the service account")
	}

	// rpm -i --nodeps: the same on rpm's side, as a new identity: the
	// vendor frees the relay name the purged node owned (it is bound to
	// that identity until then).
	b.Must("runuser", "-u", "initech-hub", "--", "initech-hub", "relay", "release", "--dir", "/var/lib/initech-hub", "acme-relay")
	if r := b.Exec("rpm", "-i", "--nodeps", "/root/agent-1.4.0.rpm"); r.Code != 0 {
		t.Fatalf("rpm -i --nodeps: %s%s", r.Stdout, r.Stderr)
	}
	if st := a.systemctl("is-active", "initech-agent"); st != "active" {
		t.Fatalf("after rpm -i the service is %s", st)
	}
	mustContain(t, "install (rpm)", a.must("install", "--ticket", hubTicket()), "relay        acme-relay connected")
	b.Must("rpm", "-e", "--nodeps", "initech-agent")
	if st := a.systemctl("is-active", "initech-agent"); st == "active" {
		t.Fatal("the service runs after rpm -e")
	}
}
