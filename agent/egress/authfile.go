// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package egress

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// maxAuthFile bounds the proxy credentials file (one line user:password).
const maxAuthFile = 4 << 10

// credentials are Basic proxy credentials and where they came from.
type credentials struct {
	user, password string
	source         string // file name, or "HTTPS_PROXY"
}

// checkAuthFileMode refuses a credentials file others may read; set per
// platform (Unix: mode bits; Windows: no check, the ACL is the
// installer's).
var checkAuthFileMode func(name string, fi os.FileInfo) error

// readAuthFile reads and checks a proxy credentials file. Its errors name
// the file, never its content.
func readAuthFile(name string) (*credentials, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, errorf("proxy-auth-file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, errorf("proxy-auth-file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, errorf("proxy-auth-file %s is not a regular file", name)
	}
	if err := checkAuthFileMode(name, fi); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, maxAuthFile+1))
	if err != nil {
		return nil, errorf("proxy-auth-file %s: %w", name, err)
	}
	user, pass, err := parseAuth(b)
	if err != nil {
		return nil, errorf("proxy-auth-file %s: %w", name, err)
	}
	return &credentials{user: user, password: pass, source: name}, nil
}

// parseAuth parses "user:password" with an optional line ending. The
// password may hold any byte but CR and LF; the user no colon.
func parseAuth(b []byte) (user, password string, err error) {
	if len(b) > maxAuthFile {
		return "", "", fmt.Errorf("longer than %d bytes", maxAuthFile)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if bytes.ContainsAny(b, "\r\n") {
		return "", "", errors.New("must hold one line, user:password")
	}
	u, p, ok := bytes.Cut(b, []byte(":"))
	switch {
	case len(b) == 0:
		return "", "", errors.New("is empty; it must hold user:password")
	case !ok:
		return "", "", errors.New("has no colon; it must hold user:password")
	case len(u) == 0:
		return "", "", errors.New("has an empty user name; it must hold user:password")
	case bytes.ContainsFunc(b, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }):
		return "", "", errors.New("holds control characters")
	}
	return string(u), string(p), nil
}
