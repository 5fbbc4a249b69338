// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package command

import (
	"reflect"
	"testing"
)

func TestGoverning(t *testing.T) {
	al, err := ParseAllowList([]string{
		"github.local:80",     // 0
		"*.acme.internal:443", // 1
		"10.20.0.0/16:5432",   // 2
		"10.0.0.0/8:*",        // 3
		"jira.acme.internal:443",
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		dest string
		want []int
	}{
		{"github.local:80", []int{0}},
		{"GitHub.Local.:80", []int{0}},
		{"github.local:81", []int{3}},        // no name pattern with its port: only the any-port CIDR can admit it
		{"jira.acme.internal:443", []int{1}}, // the first matching name pattern
		{"acme.internal:443", []int{3}},      // *.domain needs a subdomain; the CIDR may admit it
		{"10.20.1.2:5432", []int{2}},         // an IP literal: the first CIDR that holds it
		{"10.99.0.1:5432", []int{3}},
		{"10.99.0.1:22", []int{3}},
		{"192.168.0.1:5432", nil},
		{"db.internal:5432", []int{2, 3}}, // a name only CIDRs admit: all of them with the port
		{"db.internal:22", []int{3}},
		{"not a dest", nil},
	}
	for _, tt := range tests {
		if got := al.Governing(tt.dest); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Governing(%q) = %v, want %v", tt.dest, got, tt.want)
		}
	}
	var none *AllowList
	if got := none.Governing("github.local:80"); got != nil {
		t.Errorf("nil list governs %v", got)
	}
}
