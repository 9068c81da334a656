// nb-relay is NetBird's relay server (github.com/netbirdio/netbird/relay),
// unchanged: this file only wraps its cobra root command, as relay/main.go does.
//
// Usage (plain / TLS):
//
//	nb-relay -l 127.0.0.1:PORT -e rel://127.0.0.1:PORT -s SECRET \
//	    --metrics-port 0 -H 127.0.0.1:0 --log-file console --log-level info
//	nb-relay -l 127.0.0.1:PORT -e rels://HOST:PORT -s SECRET -c CERT -k KEY \
//	    --metrics-port 0 -H 127.0.0.1:0 --log-file console
//
// It listens on TCP PORT (WebSocket at /relay) and UDP PORT (QUIC, ALPN nb-quic;
// a self-signed certificate when no TLS files are given). The metrics server
// (default :9090) and health server (default :9000) are separate listeners.
package main

import (
	log "github.com/sirupsen/logrus"

	"github.com/netbirdio/netbird/relay/cmd"
)

func main() {
	if err := cmd.Execute(); err != nil {
		log.Fatalf("failed to execute command: %v", err)
	}
}
