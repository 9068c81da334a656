// nb-signal is NetBird's signal server (github.com/netbirdio/netbird/signal),
// unchanged: this file only wraps its cobra root command, as signal/main.go does.
//
// Usage (plain / TLS):
//
//	nb-signal run --port 10000 --metrics-port 0 --log-file console --log-level info
//	nb-signal run --port 10000 --metrics-port 0 --log-file console --cert-file CERT --cert-key KEY
//
// It listens on ":PORT" (all addresses, no bind-address flag). Unless PORT is
// 10000 it ALSO opens a plain gRPC listener on ":10000" (legacy compat port).
// SIGINT stops it cleanly; SIGTERM kills it.
package main

import (
	"os"

	"github.com/netbirdio/netbird/signal/cmd"
)

func main() {
	if err := cmd.Execute(); err != nil {
		os.Exit(1)
	}
}
