// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package statedir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNames pins the names on disk: renaming one would orphan the file
// in every existing state directory.
func TestNames(t *testing.T) {
	want := map[string]string{
		NodeKey: "node.key", Enrollment: "enrollment.json", Portals: "portals.json", Ticket: "enrollment.ticket",
		Config: "agent.yaml", Variables: "variables.json", LastError: "last-error", Commands: "commands.json",
		Paused: "paused", UpdateMarker: "update.json", UpdateDir: "update", Installed: "installed.json",
		AuditLog: "audit.log", AuditHead: "audit.head", Socket: "agent.sock", ServiceLog: "agent.log",
		Route: "hub-route.json", ProxyAuth: "proxy-auth",
	}
	if len(Names) != len(want) {
		t.Fatalf("Names has %d names, want %d", len(Names), len(want))
	}
	seen := map[string]bool{}
	for _, n := range Names {
		if want[n] != n {
			t.Errorf("name %q is not pinned", n)
		}
		if seen[n] {
			t.Errorf("name %q twice", n)
		}
		seen[n] = true
		if !filepath.IsLocal(n) || filepath.Base(n) != n || strings.ContainsAny(n, `/\: `) {
			t.Errorf("%q is not a plain file name", n)
		}
	}
}

func TestMarker(t *testing.T) {
	dir := t.TempDir()
	if m, err := ReadMarker(dir); m != nil || err != nil {
		t.Fatalf("no marker: %+v %v", m, err)
	}
	m := Marker{Service: "initech-agent", Packaged: true, Installed: "2026-12-01T10:00:00Z", Version: "v1.2.3"}
	// The format installer.Marker wrote: existing installs keep working.
	const golden = "{\n  \"service\": \"initech-agent\",\n  \"user\": false,\n  \"packaged\": true,\n  \"installed\": \"2026-12-01T10:00:00Z\",\n  \"version\": \"v1.2.3\"\n}\n"
	if got := string(m.Encode()); got != golden {
		t.Errorf("Encode() =\n%s\nwant\n%s", got, golden)
	}
	if err := WriteMarker(dir, m); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, Installed)); fi.Mode().Perm() != 0o600 {
		t.Errorf("marker mode %v", fi.Mode())
	}
	got, err := ReadMarker(dir)
	if err != nil || *got != m {
		t.Fatalf("ReadMarker = %+v, %v", got, err)
	}
	os.WriteFile(filepath.Join(dir, Installed), []byte("{"), 0o600)
	if _, err := ReadMarker(dir); err == nil || !strings.Contains(err.Error(), Installed) {
		t.Errorf("bad marker: %v", err)
	}
}

func TestWindowsDescriptorSDDL(t *testing.T) {
	if got, want := WindowsDescriptor.SDDL(), "O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"; got != want {
		t.Errorf("SDDL = %s, want %s", got, want)
	}
	d := Descriptor{Owner: "S-1-5-21-1-2-3-1001", DACL: []ACE{
		{Type: AceDenied, Flags: InheritOnly | Inherited, Mask: 0x120089, SID: "S-1-1-0"},
	}}
	if got, want := d.SDDL(), "O:S-1-5-21-1-2-3-1001D:(D;IOID;0x120089;;;S-1-1-0)"; got != want {
		t.Errorf("SDDL = %s, want %s", got, want)
	}
}

// TestCheckDescriptor checks the Windows rules on what a Windows machine
// would report, on any OS.
func TestCheckDescriptor(t *testing.T) {
	const user = "S-1-5-21-1004336348-1177238915-682003330-1001"
	service := []string{SIDLocalSystem, SIDAdministrators, SIDLocalSystem} // the service runs as SYSTEM
	perUser := []string{SIDLocalSystem, SIDAdministrators, user}
	full := func(sid string, flags uint8) ACE {
		return ACE{Type: AceAllowed, Flags: flags, Mask: FileAllAccess, SID: sid}
	}
	read := func(sid string, flags uint8) ACE {
		return ACE{Type: AceAllowed, Flags: flags, Mask: 0x1200a9, SID: sid}
	}
	// What %ProgramData%\Initech Agent looks like when it just inherits.
	programData := Descriptor{Owner: SIDAdministrators, DACL: []ACE{
		full(SIDLocalSystem, ObjectInherit|ContainerInherit|Inherited),
		full(SIDAdministrators, ObjectInherit|ContainerInherit|Inherited),
		{Type: AceAllowed, Flags: ObjectInherit | ContainerInherit | InheritOnly | Inherited, Mask: 0x10000000, SID: "S-1-3-0"},
		read("S-1-5-32-545", ObjectInherit|ContainerInherit|Inherited),
		{Type: AceAllowed, Flags: ContainerInherit | Inherited, Mask: 0x116, SID: "S-1-5-32-545"},
	}}
	secured := WindowsDescriptor
	child := Descriptor{Owner: SIDLocalSystem, DACL: []ACE{full(SIDLocalSystem, Inherited), full(SIDAdministrators, Inherited)}}
	tests := []struct {
		name    string
		d       Descriptor
		isDir   bool
		allowed []string
		wantErr string
	}{
		{"secured dir", secured, true, service, ""},
		{"file inside", child, false, service, ""},
		{"file the installer wrote", Descriptor{Owner: SIDAdministrators, DACL: child.DACL}, false, service, ""},
		{"inherits ProgramData", programData, true, service, `inherits from its parent an entry that gives S-1-3-0 (CREATOR OWNER) access`},
		{"users can read", Descriptor{Owner: SIDAdministrators, Protected: true, DACL: []ACE{full(SIDLocalSystem, 3), read("S-1-5-32-545", 3)}}, true, service,
			`gives S-1-5-32-545 (BUILTIN\Users) access`},
		{"everyone", Descriptor{Owner: SIDLocalSystem, DACL: []ACE{full("S-1-1-0", 0)}}, false, service, "S-1-1-0 (Everyone)"},
		{"authenticated users", Descriptor{Owner: SIDLocalSystem, DACL: []ACE{read("S-1-5-11", Inherited)}}, false, service, "Authenticated Users"},
		{"planted by a user", Descriptor{Owner: user, DACL: child.DACL}, false, service, "owned by " + user},
		{"dir created by a user", Descriptor{Owner: user, Protected: true, DACL: secured.DACL}, true, service, "another local user may have created it"},
		{"unknown ACE type", Descriptor{Owner: SIDLocalSystem, DACL: []ACE{{Type: 9, Mask: 1}}}, false, service, "unknown type 9"},
		{"deny entries are fine", Descriptor{Owner: SIDLocalSystem, DACL: []ACE{full(SIDLocalSystem, 0), {Type: AceDenied, Mask: FileAllAccess, SID: "S-1-1-0"}}}, false, service, ""},
		{"no rights is fine", Descriptor{Owner: SIDLocalSystem, DACL: []ACE{{Type: AceAllowed, SID: "S-1-5-32-545"}}}, false, service, ""},
		{"per-user install", Descriptor{Owner: user, DACL: []ACE{full(SIDLocalSystem, 0x13), full(SIDAdministrators, 0x13), full(user, 0x13)}}, true, perUser, ""},
		{"per-user, another user", Descriptor{Owner: user, DACL: []ACE{full(user, 0), read("S-1-5-21-9-9-9-1002", 0)}}, false, perUser, "S-1-5-21-9-9-9-1002"},
		{"null DACL", Descriptor{Owner: SIDLocalSystem, DACL: []ACE{{Type: AceAllowed, Mask: FileAllAccess, SID: "S-1-1-0"}}}, false, service, "Everyone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkDescriptor(`C:\ProgramData\Initech Agent`, tt.d, tt.isDir, tt.allowed)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
	// What Secure sets passes the check that the service makes at start,
	// and every entry it sets is inherited by files and directories.
	for _, a := range WindowsDescriptor.DACL {
		if a.Flags&(ObjectInherit|ContainerInherit) != ObjectInherit|ContainerInherit || a.Mask != FileAllAccess {
			t.Errorf("entry %+v is not full control inherited by everything inside", a)
		}
	}
	if !WindowsDescriptor.Protected || WindowsDescriptor.Owner != SIDAdministrators || len(WindowsDescriptor.DACL) != 2 {
		t.Errorf("WindowsDescriptor = %+v", WindowsDescriptor)
	}
}
