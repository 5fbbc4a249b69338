// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
	for _, b := range []struct{ brand, display, version string }{
		{"initech", "", "v1.4.0"},
		{"globex", "Globex Agent", "v1.2.3"},
	} {
		t.Run(b.brand, func(t *testing.T) {
			env := []string{"BRAND=" + b.brand, "VERSION=" + b.version}
			if b.display != "" {
				env = append(env, "BRAND_DISPLAY="+b.display)
			}
			run(t, root, env, "scripts/package.sh")
			dist := filepath.Join(root, "dist")
			v := strings.TrimPrefix(b.version, "v")
			name := b.brand + "-agent"
			for _, f := range []string{
				name + "_" + v + "_amd64.deb", name + "_" + v + "_arm64.deb",
				name + "_" + v + "_amd64.rpm", name + "_" + v + "_arm64.rpm",
				name + "_" + v + "_windows_amd64.msi",
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
			mustContain(t, "dpkg-deb -I", info, "Package: "+name, "Version: "+v, "postinst", "prerm", "postrm", "preinst")
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
				"User="+name, "NoNewPrivileges=yes", "ProtectSystem=strict", "RestartSec=2s")
			out, err := exec.Command("systemd-analyze", "verify", "--recursive-errors=no", "--man=no", "--generators=no",
				"--root="+scratch, "/usr/lib/systemd/system/"+name+".service").CombinedOutput()
			if err != nil {
				t.Errorf("systemd-analyze verify: %v\n%s", err, out)
			}
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
