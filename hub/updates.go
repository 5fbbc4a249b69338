// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"context"

	"github.com/edgeportal/connect/wire/control"
)

// Release serving over the control channel (the files: releases.go).

func handleReleaseCheck(ctx context.Context, s *Server, cc *controlConn, m control.Msg) (any, error) {
	req, err := body[control.ReleaseCheck](m)
	if err != nil {
		return nil, err
	}
	b, err := s.dir.ManifestBytes(req.Channel, req.Version)
	if err != nil {
		return nil, &control.Error{Code: control.ErrCodeBadRequest, Message: err.Error()}
	}
	return control.ReleaseManifest{Manifest: b}, nil
}

func handleReleaseFetch(ctx context.Context, s *Server, cc *controlConn, m control.Msg) (any, error) {
	req, err := body[control.ReleaseFetch](m)
	if err != nil {
		return nil, err
	}
	b, err := s.dir.ReadChunk(req.Channel, req.Version, req.Platform, req.Offset, control.MaxChunk)
	if err != nil {
		return nil, &control.Error{Code: control.ErrCodeBadRequest, Message: err.Error()}
	}
	return control.ReleaseChunk{Data: b}, nil
}
