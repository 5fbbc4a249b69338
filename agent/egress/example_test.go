// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package egress_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/edgeportal/connect/agent/egress"
)

// How the node dials the hub: one Dialer from config, used for the
// control connection, every data connection, and update downloads.
func ExampleDialer_DialContext() {
	d, err := egress.New(egress.Options{
		Proxy:         "http://proxy.acme:3128", // or egress.ProxyFromEnvironment
		ProxyAuthFile: "/var/lib/initech-agent/proxy-auth",
		TLS:           true,
		CAFile:        "/etc/initech-agent/acme-inspection-ca.pem",
	})
	if err != nil {
		log.Fatal(err) // one line naming the setting at fault
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "hub.initech.example:443")
	var he *egress.HopError
	if errors.As(err, &he) {
		fmt.Println("doctor:", he) // e.g. proxy proxy.acme:3128 refused CONNECT … (realm "Acme"); …
		return
	}
	defer c.Close()
	// c is ready for the wire preface and Noise with the pinned hub key.
	fmt.Println("doctor:", d.Describe("hub.initech.example:443"))
}
