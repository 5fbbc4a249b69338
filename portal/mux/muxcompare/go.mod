module github.com/edgeportal/connect/portal/mux/muxcompare

go 1.26.8

require (
	github.com/edgeportal/connect v0.0.0
	github.com/hashicorp/yamux v0.1.2
	github.com/xtaci/smux v1.5.58
)

require (
	github.com/flynn/noise v1.1.0 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)

replace github.com/edgeportal/connect => ../../..
