// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package statedir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/windows"
)

// secure creates dir with WindowsDescriptor in the same call (so no local
// user can open it while it still has %ProgramData%'s ACL), or, for an
// existing directory owned by SYSTEM or the Administrators, sets it:
// owner, protected DACL, and the inheritable entries pushed down to what
// is inside (SetNamedSecurityInfo propagates them). Then it adopts what
// is inside (see adopt) or refuses the directory if anything there was
// planted by another account. It is idempotent: the installer calls it
// before writing the state files and again after.
func secure(dir string) error {
	sd, err := windows.SecurityDescriptorFromString(WindowsDescriptor.SDDL())
	if err != nil {
		return fmt.Errorf("security descriptor %s: %w", WindowsDescriptor.SDDL(), err)
	}
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return err
		}
		p, err := windows.UTF16PtrFromString(dir)
		if err != nil {
			return err
		}
		sa := &windows.SecurityAttributes{Length: uint32(unsafe.Sizeof(windows.SecurityAttributes{})), SecurityDescriptor: sd}
		if err := windows.CreateDirectory(p, sa); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		return nil
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory (a link or a file); remove it and install again", dir)
	}
	d, err := descriptorOf(dir)
	if err != nil {
		return err
	}
	if d.Owner != SIDLocalSystem && d.Owner != SIDAdministrators {
		return fmt.Errorf("%s already exists and is owned by %s, not by SYSTEM or the Administrators: another local user may have created it to plant files; remove it and install again", dir, sidName(d.Owner))
	}
	owner, _, err := sd.Owner()
	if err != nil {
		return err
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return err
	}
	if err := windows.SetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT,
		windows.OWNER_SECURITY_INFORMATION|windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION,
		owner, nil, dacl, nil); err != nil {
		return fmt.Errorf("set the permissions of %s: %w", dir, err)
	}
	who, err := allowed()
	if err != nil {
		return err
	}
	return filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		if err := adopt(path, e.IsDir(), owner, who); err != nil {
			return fmt.Errorf("%w (found while securing %s)", err, dir)
		}
		return nil
	})
}

// adopt checks one entry inside the state directory while Secure runs:
// owned by SYSTEM, the Administrators or this process's account (the
// installer's, which wrote the state files), and with no entry of its own
// for anyone else. A file this process's account owns is given to the
// Administrators, so that the service (SYSTEM) accepts it at start.
// Anything else was planted by another account: it is refused, not
// adopted.
func adopt(path string, isDir bool, admins *windows.SID, who []string) error {
	d, err := descriptorOf(path)
	if err != nil {
		return err
	}
	if err := checkDescriptor(path, d, isDir, who); err != nil {
		return err
	}
	if d.Owner == SIDLocalSystem || d.Owner == SIDAdministrators {
		return nil
	}
	if err := windows.SetNamedSecurityInfo(path, windows.SE_FILE_OBJECT, windows.OWNER_SECURITY_INFORMATION, admins, nil, nil, nil); err != nil {
		return fmt.Errorf("give %s to the Administrators: %w", path, err)
	}
	return nil
}

// allowed is who may own or use the state directory: SYSTEM, the
// Administrators, and the account this process runs as (SYSTEM for the
// service; the user for a per-user install in %LocalAppData%).
func allowed() ([]string, error) {
	tu, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return nil, fmt.Errorf("this process's account: %w", err)
	}
	return []string{SIDLocalSystem, SIDAdministrators, tu.User.Sid.String()}, nil
}

func checkDir(dir string, fi os.FileInfo) error {
	if lfi, err := os.Lstat(dir); err == nil && lfi.Mode()&(fs.ModeSymlink|fs.ModeIrregular) != 0 {
		return fmt.Errorf("state directory %s is a link; refusing to use it", dir)
	}
	return checkPath(dir, true)
}

func checkFile(path string, fi os.FileInfo) error { return checkPath(path, false) }

func checkPath(path string, isDir bool) error {
	who, err := allowed()
	if err != nil {
		return err
	}
	d, err := descriptorOf(path)
	if err != nil {
		return err
	}
	return checkDescriptor(path, d, isDir, who)
}

// descriptorOf reads the owner and DACL of path.
func descriptorOf(path string) (Descriptor, error) {
	sd, err := windows.GetNamedSecurityInfo(path, windows.SE_FILE_OBJECT, windows.OWNER_SECURITY_INFORMATION|windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		return Descriptor{}, fmt.Errorf("read the permissions of %s: %w", path, err)
	}
	var d Descriptor
	owner, _, err := sd.Owner()
	if err != nil {
		return d, fmt.Errorf("read the owner of %s: %w", path, err)
	}
	d.Owner = owner.String()
	control, _, err := sd.Control()
	if err != nil {
		return d, err
	}
	d.Protected = control&windows.SE_DACL_PROTECTED != 0
	dacl, _, err := sd.DACL()
	if err != nil {
		return d, fmt.Errorf("read the access list of %s: %w", path, err)
	}
	if dacl == nil {
		// A NULL DACL gives everyone full control.
		d.DACL = []ACE{{Type: AceAllowed, Mask: FileAllAccess, SID: "S-1-1-0"}}
		return d, nil
	}
	for i := uint32(0); i < uint32(dacl.AceCount); i++ {
		var ace *windows.ACCESS_ALLOWED_ACE
		if err := windows.GetAce(dacl, i, &ace); err != nil {
			return d, fmt.Errorf("read the access list of %s: %w", path, err)
		}
		a := ACE{Type: ace.Header.AceType, Flags: ace.Header.AceFlags, Mask: uint32(ace.Mask)}
		if a.Type == AceAllowed || a.Type == AceDenied {
			// Both have the SID right after the mask.
			a.SID = (*windows.SID)(unsafe.Pointer(&ace.SidStart)).String()
		}
		d.DACL = append(d.DACL, a)
	}
	return d, nil
}
