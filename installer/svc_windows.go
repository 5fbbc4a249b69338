// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package installer

import "github.com/kardianos/service"

func needsServiceHandshake() bool { return !service.Interactive() }
