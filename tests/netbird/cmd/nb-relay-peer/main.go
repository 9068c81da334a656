// nb-relay-peer is a one-shot relay peer built on NetBird's own relay client
// (github.com/netbirdio/netbird/shared/relay/client). It is the interop partner
// for peerlink's Rust relay client: same handshake, token, ids and transport
// framing as a real NetBird agent, because it is NetBird's code.
//
// The token is made the way NetBird's management server makes it and the agent
// stores it: v2 HMAC-SHA256 generator keyed with SHA-256(secret), payload = the
// decimal unix expiry, signature base64'd into hmac.Token and decoded again by
// hmac.TokenStore into the binary [algo=1][32-byte MAC][expiry] form.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	log "github.com/sirupsen/logrus"

	"github.com/netbirdio/netbird/shared/relay/auth/hmac"
	authv2 "github.com/netbirdio/netbird/shared/relay/auth/hmac/v2"
	relayclient "github.com/netbirdio/netbird/shared/relay/client"
)

const usageText = `nb-relay-peer: connect to a NetBird relay with NetBird's relay client, open a
relayed connection to one peer, then send one message or receive one.

Usage:
  nb-relay-peer -url rel://127.0.0.1:33080 -secret S -key OWN_PUB -peer REMOTE_PUB [-send TEXT | -send-hex HEX] [flags]

Without -send/-send-hex it waits for one message from -peer and prints it as
lowercase hex plus a newline on stdout. With -send/-send-hex it sends the
message (after the relay reports -peer online) and exits; add -reply to then
wait for one message back and print it. With -echo (receive mode) the received
message is sent back to -peer before exiting.

After its last send it stays connected for -linger before closing: the relay
has no delivery acknowledgement, QUIC carries messages as unreliable datagrams,
and NetBird's client discards a queued but unread message when the relay
reports the sender offline, so closing at once can lose the message.

Keys are WireGuard-style base64 public keys (any 32 bytes, e.g.
"head -c32 /dev/urandom | base64"); the relay id is "sha-" + SHA-256 of the
base64 string. Logs go to stderr; the relay's instance URL (AuthResponse) is
logged there as "instance-url: ...".

Exit status: 0 success, 1 failure or timeout, 2 bad usage.

Environment: NB_RELAY_TRANSPORT (auto|ws|quic|prefer-ws|prefer-quic) is read by
NetBird's client; -transport sets it. For rels:// with a self-signed
certificate set SSL_CERT_FILE=/path/to/cert.pem (QUIC verifies too).

Flags:
`

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("nb-relay-peer", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	var (
		serverURL = fs.String("url", "", "relay server URL, rel://HOST:PORT or rels://HOST:PORT (required)")
		secret    = fs.String("secret", "", "relay auth secret, as given to the relay server's --auth-secret (required)")
		ownKey    = fs.String("key", "", "own WireGuard public key, base64 (required)")
		peerKey   = fs.String("peer", "", "remote peer's WireGuard public key, base64 (required)")
		sendText  = fs.String("send", "", "send this text (UTF-8 bytes) to -peer")
		sendHex   = fs.String("send-hex", "", "send these bytes, given as hex, to -peer")
		reply     = fs.Bool("reply", false, "after sending, wait for one message from -peer and print it as hex")
		echo      = fs.Bool("echo", false, "receive mode: send the received message back to -peer")
		timeout   = fs.Duration("timeout", 30*time.Second, "overall deadline (connect, wait for peer, transfer)")
		linger    = fs.Duration("linger", time.Second, "stay connected this long after the last send (-send without -reply, -echo) before closing")
		ttl       = fs.Duration("token-ttl", time.Hour, "token lifetime; negative gives an already-expired token")
		transport = fs.String("transport", "", "relay transport: auto, ws, quic, prefer-ws, prefer-quic (sets NB_RELAY_TRANSPORT)")
		mtu       = fs.Uint("mtu", 1280, "MTU hint passed to NetBird's client (>1280 avoids QUIC datagrams)")
		logLevel  = fs.String("log-level", "warn", "logrus level for NetBird's client logs on stderr: trace, debug, info, warn, error")
	)
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *serverURL == "" || *secret == "" || *ownKey == "" || *peerKey == "" || fs.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "nb-relay-peer: -url, -secret, -key and -peer are required")
		fs.Usage()
		return 2
	}
	if *sendText != "" && *sendHex != "" {
		fmt.Fprintln(os.Stderr, "nb-relay-peer: -send and -send-hex are exclusive")
		return 2
	}
	for _, k := range []string{*ownKey, *peerKey} {
		if b, err := base64.StdEncoding.DecodeString(k); err != nil || len(b) != 32 {
			fmt.Fprintf(os.Stderr, "nb-relay-peer: %q is not a base64 32-byte key\n", k)
			return 2
		}
	}
	var payload []byte
	sending := false
	switch {
	case *sendHex != "":
		b, err := hex.DecodeString(strings.TrimSpace(*sendHex))
		if err != nil {
			fmt.Fprintf(os.Stderr, "nb-relay-peer: bad -send-hex: %v\n", err)
			return 2
		}
		payload, sending = b, true
	case *sendText != "":
		payload, sending = []byte(*sendText), true
	}
	if *transport != "" {
		_ = os.Setenv(relayclient.EnvRelayTransport, *transport)
	}

	lvl, err := log.ParseLevel(*logLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nb-relay-peer: bad -log-level: %v\n", err)
		return 2
	}
	log.SetOutput(os.Stderr)
	log.SetLevel(lvl)

	if err := session(*serverURL, *secret, *ownKey, *peerKey, payload, sending, *reply, *echo, *timeout, *linger, *ttl, uint16(*mtu)); err != nil {
		fmt.Fprintf(os.Stderr, "nb-relay-peer: %v\n", err)
		return 1
	}
	return 0
}

// token builds the relay credentials exactly as NetBird does between its
// management server (generator) and agent (TokenStore).
func token(secret string, ttl time.Duration) (*hmac.TokenStore, error) {
	hashed := sha256.Sum256([]byte(secret))
	gen, err := authv2.NewGenerator(authv2.AuthAlgoHMACSHA256, hashed[:], ttl)
	if err != nil {
		return nil, err
	}
	t, err := gen.GenerateToken()
	if err != nil {
		return nil, err
	}
	store := &hmac.TokenStore{}
	err = store.UpdateToken(&hmac.Token{
		Payload:   string(t.Payload),
		Signature: base64.StdEncoding.EncodeToString(t.Signature),
	})
	return store, err
}

func session(url, secret, own, peer string, payload []byte, sending, reply, echo bool,
	timeout, linger, ttl time.Duration, mtu uint16) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	store, err := token(secret, ttl)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}

	c := relayclient.NewClient(url, store, own, mtu)
	if err := c.Connect(ctx); err != nil {
		return fmt.Errorf("connect %s: %w", url, err)
	}
	defer func() { _ = c.Close() }()
	inst, _ := c.ServerInstanceURL()
	fmt.Fprintf(os.Stderr, "instance-url: %s transport: %s\n", inst, c.Transport())

	// Blocks until the relay reports the peer online (subscribe + PeersOnline).
	conn, err := c.OpenConn(ctx, peer)
	if err != nil {
		return fmt.Errorf("open conn to %s: %w", peer, err)
	}
	defer func() { _ = conn.Close() }()

	if sending {
		if _, err := conn.Write(payload); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		fmt.Fprintf(os.Stderr, "sent %d bytes\n", len(payload))
		if !reply {
			time.Sleep(linger)
			return nil
		}
	}

	// relay client Conn has no deadlines (they panic), so read in a goroutine.
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		buf := make([]byte, 65535)
		n, err := conn.Read(buf)
		ch <- result{buf[:n], err}
	}()
	select {
	case <-ctx.Done():
		return fmt.Errorf("no message from peer within %s", timeout)
	case r := <-ch:
		if r.err != nil {
			return fmt.Errorf("read: %w", r.err)
		}
		fmt.Println(hex.EncodeToString(r.b))
		if echo && !sending {
			if _, err := conn.Write(r.b); err != nil {
				return fmt.Errorf("echo write: %w", err)
			}
			fmt.Fprintf(os.Stderr, "echoed %d bytes\n", len(r.b))
			time.Sleep(linger)
		}
	}
	return nil
}
