// nb-signal-peer: NetBird's own Go signal client as an interop partner for peerlink's tests.
// It registers with -key, sends one OFFER (built by NetBird's MarshalCredential) to -peer,
// answers every OFFER it receives, and prints one line per received message.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	signal "github.com/netbirdio/netbird/shared/signal/client"
	"github.com/netbirdio/netbird/shared/signal/proto"
)

func letters(n int) string {
	const l = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := make([]byte, n)
	for i := range b {
		b[i] = l[rand.Intn(len(l))]
	}
	return string(b)
}

func main() {
	addr := flag.String("addr", "", "signal host:port")
	keyS := flag.String("key", "", "own private key, base64")
	peer := flag.String("peer", "", "peer public key, base64")
	timeout := flag.Duration("timeout", 20*time.Second, "exit after")
	flag.Parse()
	key, err := wgtypes.ParseKey(*keyS)
	if err != nil {
		fmt.Println("bad key:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	c, err := signal.NewClient(ctx, *addr, key, false)
	if err != nil {
		fmt.Println("connect:", err)
		os.Exit(1)
	}
	cred := func(t proto.Body_Type) *proto.Message {
		m, _ := signal.MarshalCredential(key, *peer, signal.CredentialPayload{
			Type: t, WgListenPort: 51821, Credential: &signal.Credential{UFrag: letters(16), Pwd: letters(32)},
			RelaySrvAddress: "rels://go-relay.example:443", RelaySrvIP: netip.MustParseAddr("10.9.8.7"),
			SessionID: []byte{0xde, 0xad, 0xbe, 0xef, 0x01},
		})
		return m
	}
	go func() {
		_ = c.Receive(ctx, func(msg *proto.Message) error {
			b := msg.GetBody()
			fmt.Printf("got %s from %s payload=%q port=%d version=%q relay=%q relayip=%x session=%x\n",
				b.GetType(), msg.GetKey(), b.GetPayload(), b.GetWgListenPort(), b.GetNetBirdVersion(),
				b.GetRelayServerAddress(), b.GetRelayServerIP(), b.GetSessionId())
			if b.GetType() == proto.Body_OFFER {
				if err := c.Send(cred(proto.Body_ANSWER)); err != nil {
					fmt.Println("answer:", err)
				}
			}
			return nil
		})
	}()
	c.WaitStreamConnected(ctx)
	fmt.Println("registered")
	if err := c.Send(cred(proto.Body_OFFER)); err != nil {
		fmt.Println("offer:", err)
	}
	fmt.Println("offer sent")
	<-ctx.Done()
}
