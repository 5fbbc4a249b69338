// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package statedir

import (
	"fmt"
	"slices"
	"strings"
)

// Security identifiers of the accounts a Windows state directory admits.
const (
	SIDLocalSystem    = "S-1-5-18"     // NT AUTHORITY\SYSTEM: the service's account
	SIDAdministrators = "S-1-5-32-544" // BUILTIN\Administrators
)

// ACE types, flags and access rights, with their Windows values.
const (
	AceAllowed = 0x0 // ACCESS_ALLOWED_ACE_TYPE
	AceDenied  = 0x1 // ACCESS_DENIED_ACE_TYPE

	ObjectInherit    = 0x1  // OBJECT_INHERIT_ACE: files inside inherit it
	ContainerInherit = 0x2  // CONTAINER_INHERIT_ACE: directories inside inherit it
	InheritOnly      = 0x8  // INHERIT_ONLY_ACE: applies to children only
	Inherited        = 0x10 // INHERITED_ACE: came from the parent

	FileAllAccess = 0x1f01ff // FILE_ALL_ACCESS: full control
)

// ACE is one entry of a Windows access control list.
type ACE struct {
	Type  uint8  // AceAllowed or AceDenied (others are read as "unknown")
	Flags uint8  // ObjectInherit | ContainerInherit | InheritOnly | Inherited
	Mask  uint32 // access rights
	SID   string // the account, "S-1-5-18"
}

// Descriptor is the part of a Windows security descriptor that decides
// who may use a file: its owner (who may always change its DACL), whether
// its DACL is protected from inheriting its parent's entries, and the
// DACL itself.
type Descriptor struct {
	Owner     string
	Protected bool
	DACL      []ACE
}

// WindowsDescriptor is what Secure sets on a Windows state directory:
// owned by the Administrators; a protected DACL, so nothing of
// %ProgramData%'s ACL (which lets local users read and create files) is
// inherited; full control for SYSTEM and the Administrators, inherited by
// every file and directory created inside; nothing for anyone else.
var WindowsDescriptor = Descriptor{
	Owner:     SIDAdministrators,
	Protected: true,
	DACL: []ACE{
		{Type: AceAllowed, Flags: ObjectInherit | ContainerInherit, Mask: FileAllAccess, SID: SIDLocalSystem},
		{Type: AceAllowed, Flags: ObjectInherit | ContainerInherit, Mask: FileAllAccess, SID: SIDAdministrators},
	},
}

// sddlAliases are the SDDL abbreviations of the SIDs used here.
var sddlAliases = map[string]string{SIDLocalSystem: "SY", SIDAdministrators: "BA"}

// SDDL renders d in the Security Descriptor Definition Language, the form
// Secure hands to Windows: WindowsDescriptor is
// "O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)".
func (d Descriptor) SDDL() string {
	var b strings.Builder
	if d.Owner != "" {
		b.WriteString("O:" + sddlSID(d.Owner))
	}
	b.WriteString("D:")
	if d.Protected {
		b.WriteString("P")
	}
	for _, a := range d.DACL {
		typ := "A"
		if a.Type == AceDenied {
			typ = "D"
		}
		var flags string
		for _, f := range []struct {
			bit  uint8
			name string
		}{{ObjectInherit, "OI"}, {ContainerInherit, "CI"}, {InheritOnly, "IO"}, {Inherited, "ID"}} {
			if a.Flags&f.bit != 0 {
				flags += f.name
			}
		}
		rights := fmt.Sprintf("0x%x", a.Mask)
		if a.Mask == FileAllAccess {
			rights = "FA"
		}
		fmt.Fprintf(&b, "(%s;%s;%s;;;%s)", typ, flags, rights, sddlSID(a.SID))
	}
	return b.String()
}

func sddlSID(sid string) string {
	if a, ok := sddlAliases[sid]; ok {
		return a
	}
	return sid
}

// sidNames names the well-known SIDs an error message may show.
var sidNames = map[string]string{
	SIDLocalSystem:    `NT AUTHORITY\SYSTEM`,
	SIDAdministrators: `BUILTIN\Administrators`,
	"S-1-1-0":         "Everyone",
	"S-1-3-0":         "CREATOR OWNER",
	"S-1-5-11":        `NT AUTHORITY\Authenticated Users`,
	"S-1-5-32-545":    `BUILTIN\Users`,
	"S-1-5-4":         `NT AUTHORITY\INTERACTIVE`,
}

func sidName(sid string) string {
	if n, ok := sidNames[sid]; ok {
		return sid + " (" + n + ")"
	}
	return sid
}

// checkDescriptor reports why d does not keep path private to the
// accounts in allowed (SIDs), or nil: the owner (who may always change
// the DACL) must be one of them, and so must every account an entry of
// the DACL gives any access, inherited entries included. Entries that
// take access away are fine. isDir only words the message.
func checkDescriptor(path string, d Descriptor, isDir bool, allowed []string) error {
	what := path
	if isDir {
		what = "state directory " + path
	}
	if !slices.Contains(allowed, d.Owner) {
		return fmt.Errorf("%s is owned by %s, not by SYSTEM, the Administrators or the service's account: another local user may have created it; remove it and install again", what, sidName(d.Owner))
	}
	for _, a := range d.DACL {
		if a.Type == AceDenied || a.Mask == 0 {
			continue
		}
		if a.Type != AceAllowed {
			return fmt.Errorf("%s has an access entry of unknown type %d; install again to reset its permissions", what, a.Type)
		}
		if slices.Contains(allowed, a.SID) {
			continue
		}
		if a.Flags&Inherited != 0 {
			return fmt.Errorf("%s inherits from its parent an entry that gives %s access (%%ProgramData%% lets local users read); install again to give it its own permissions", what, sidName(a.SID))
		}
		return fmt.Errorf("%s gives %s access (mask 0x%x); only SYSTEM and the Administrators may have any: install again to reset its permissions", what, sidName(a.SID), a.Mask)
	}
	return nil
}
