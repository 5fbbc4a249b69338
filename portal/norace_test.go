// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package portal

// raceEnabled is set under -race.
var raceEnabled bool
