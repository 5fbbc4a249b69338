// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Command initech-hub is the vendor's hub: the relay (public, one port,
// splices ciphertext), the authority (private, dials out to the relay,
// signs credentials), and the vendor's admin commands (tickets, members,
// commands and releases, signed on the admin's side). The binary's name
// follows the brand (internal/brand).
//
// This package parses flags, calls the hub packages, prints and sets the
// exit code; the workflows live in hub, hub/authority and enroll.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/edgeportal/connect/internal/brand"
	"github.com/edgeportal/connect/internal/cliutil"
)

func main() { os.Exit(Main()) }

// Main runs the program with os.Args and returns the exit code.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cliutil.Exit(brand.HubBinary(), program().Run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// program is the command table.
func program() *cliutil.Program {
	return &cliutil.Program{
		Name:  brand.HubBinary(),
		Title: "the " + brand.HubDisplayName() + ": relay, authority and the vendor's admin commands",
		Commands: []*cliutil.Command{
			{Name: "init", Synopsis: "--dir HUB --addr HOST:PORT [--public HOST:PORT]...", Run: cmdInit,
				Summary: "create a relay directory: its Noise key and config (no signing key)",
				Example: "init --dir /var/lib/" + brand.HubBinary() + " --addr 0.0.0.0:7400 --public hub." + brand.Name() + ".example:7400"},
			{Name: "serve", Synopsis: "--dir HUB [flags]", Run: cmdServe,
				Summary: "run the relay",
				Example: "serve --dir /var/lib/" + brand.HubBinary() + " --metrics :9100"},
			{Name: "trust", Synopsis: "--dir HUB --authority-key KEY [--vendor-dir VENDOR]", Run: cmdTrust,
				Summary: "make a relay trust an authority on another machine",
				Example: "trust --dir /var/lib/" + brand.HubBinary() + " --authority-key sigkey:4f0c…"},
			{Name: "keys create", Synopsis: "--dir VENDOR", Run: cmdKeysCreate,
				Summary: "create the vendor's command and release keys (keep them on the admin side)",
				Example: "keys create --dir ~/" + brand.Name() + "-vendor-keys"},
			{Name: "authority init", Synopsis: "--dir AUTH (--hub-dir HUB | --hub ADDR --hub-key KEY) [--vendor-dir VENDOR]", Run: cmdAuthorityInit,
				Summary: "create the authority's directory: its signing and Noise keys, its store",
				Example: "authority init --dir auth --hub-dir hub --vendor-dir vendor"},
			{Name: "authority serve", Synopsis: "--dir AUTH [flags]", Run: cmdAuthorityServe,
				Summary: "run the authority: it dials out to the relay and serves redemption and refresh",
				Example: "authority serve --dir auth"},
			{Name: "ticket create", Synopsis: "--dir AUTH [flags]", Run: cmdTicketCreate,
				Summary: "create an enrollment ticket",
				Example: "ticket create --dir auth --attribute inlet-to-saas --relay acme-relay --out acme.ticket\n" +
					"ticket create --dir auth --attribute outlet-from-saas --relay acme-relay --replica --usage-count 2 --out acme-replica.ticket\n" +
					"ticket create --dir auth --enroller --enroller-may-grant inlet-to-saas --enroller-relays 'acme-*' --out saas.ticket"},
			{Name: "ticket list", Synopsis: "--dir AUTH [--json]", Run: cmdTicketList,
				Summary: "list tickets: uses left, expiry, who made them",
				Example: "ticket list --dir auth"},
			{Name: "ticket revoke", Synopsis: "--dir AUTH TICKET", Run: cmdTicketRevoke,
				Summary: "withdraw a ticket (one that leaked) so it can no longer be redeemed",
				Example: "ticket revoke --dir auth T1a2b3c4d5e6f"},
			{Name: "members list", Synopsis: "--dir AUTH [--json]", Run: cmdMembersList,
				Summary: "list members with what the relay knows of them now (online, paused, draining, outlets down)",
				Example: "members list --dir auth --json"},
			{Name: "members revoke", Synopsis: "--dir AUTH IDENTIFIER", Run: cmdMembersRevoke,
				Summary: "revoke a member for good: the relay closes its connections at once",
				Example: "members revoke --dir auth I5f3c…"},
			{Name: "relay list", Synopsis: "--dir HUB [--json]", Run: cmdRelayList,
				Summary: "list relay names, the identity that owns each, and the nodes serving it now with their health",
				Example: "relay list --dir hub"},
			{Name: "relay release", Synopsis: "--dir HUB NAME", Run: cmdRelayRelease,
				Summary: "free a relay name so another identity may register it",
				Example: "relay release --dir hub acme-relay"},
			{Name: "outlet push", Synopsis: "--dir HUB --command-key FILE --relay RELAY --from NAME --to HOST:PORT [flags]", Run: cmdOutletPush,
				Summary: "add an outlet on a customer's node (inside its allow-list), signed with the command key",
				Example: "outlet push --dir hub --command-key vendor/command.key --relay acme-relay --from jira --to jira.acme.internal:443 --wait 30s"},
			{Name: "outlet remove", Synopsis: "--dir HUB --command-key FILE --relay RELAY --from NAME [flags]", Run: cmdOutletRemove,
				Summary: "remove an outlet the vendor pushed",
				Example: "outlet remove --dir hub --command-key vendor/command.key --relay acme-relay --from jira --wait 30s"},
			{Name: "update push", Synopsis: "--dir HUB --command-key FILE --relay RELAY [--wait 30s]", Run: cmdUpdatePush,
				Summary: "ask a node to check for an update now (a signed command)",
				Example: "update push --dir hub --command-key vendor/command.key --relay acme-relay --wait 30s"},
			{Name: "commands list", Synopsis: "--dir HUB [--relay RELAY] [--json]", Run: cmdCommandsList,
				Summary: "list vendor commands and what became of them",
				Example: "commands list --dir hub --relay acme-relay"},
			{Name: "commands send-raw", Synopsis: "--dir HUB --relay RELAY --file FILE [--wait 30s]", Run: cmdSendRaw,
				Summary: "deliver bytes as a command, unchecked (a diagnostic of a node's refusals)",
				Example: "commands send-raw --dir hub --relay acme-relay --file replayed.cbor --wait 10s"},
			{Name: "release publish", Synopsis: "--dir HUB --release-key FILE --version V --file OS/ARCH=PATH... [--channel stable]", Run: cmdReleasePublish,
				Summary: "sign a release with the release key and place it where the relay serves it",
				Example: "release publish --dir hub --release-key vendor/release.key --version v1.4.0 --file linux/amd64=dist/" + brand.AgentBinary()},
			{Name: "release list", Synopsis: "--dir HUB", Run: cmdReleaseList,
				Summary: "list published releases",
				Example: "release list --dir hub"},
			{Name: "store migrate", Synopsis: "--from DIR --to postgres://…", Run: cmdStoreMigrate,
				Summary: "move a relay's or an authority's state from its file to PostgreSQL",
				Example: "store migrate --from hub --to postgres://hub@db.internal/relays"},
			{Name: "version", Aliases: []string{"--version"}, Run: cmdVersion,
				Summary: "print the version", Example: "version"},
		},
	}
}
