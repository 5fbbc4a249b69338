// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package installer

import (
	"errors"

	"github.com/kardianos/service"
)

func newFakeService(dir string, s Spec) (service.Service, error) {
	return nil, errors.New("the fake service manager is not available on Windows")
}
