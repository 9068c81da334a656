#!/usr/bin/env python3
"""UDP flood for tests/lab/netns_flood.sh, from a namespace the lab made, at an address in it.

  flood.py garbage HOST PORT[,PORT...] PPS SECS
      random datagrams (random sizes 1-1400, random bytes): never WireGuard or STUN messages;
      several ports take turns.
  flood.py initiations HOST PORT[,PORT...] PPS SECS PUBKEY_B64
      148-byte WireGuard handshake initiations with random content but a valid MAC1 for
      PUBKEY (so they pass the first check, as a stranger's real ones would), from a stranger;
      counts the cookie replies (type 3, 64 bytes) that come back.

Prints one line: "sent N received_cookies M seconds S".
"""
import base64
import hashlib
import os
import socket
import sys
import time

# Packets are drawn from a pool made up front, so the loop costs one sendto per packet.
POOL = 512
# Rate control in slices of this many packets: fine enough for a steady rate.
SLICE = 64


def mac1_key(pub: bytes) -> bytes:
    # WireGuard: mac1 key = HASH(LABEL_MAC1 || responder's static public key), HASH = BLAKE2s-256.
    return hashlib.blake2s(b"mac1----" + pub).digest()


def initiation(key: bytes) -> bytes:
    # type 1, reserved zero, sender index, ephemeral, encrypted static, encrypted timestamp
    msg = bytes([1, 0, 0, 0]) + os.urandom(4 + 32 + 48 + 28)
    mac1 = hashlib.blake2s(msg, key=key, digest_size=16).digest()
    return msg + mac1 + bytes(16)


def garbage() -> bytes:
    n = 1 + int.from_bytes(os.urandom(2), "little") % 1400
    return os.urandom(n)


def main() -> None:
    mode, host, pps, secs = sys.argv[1], sys.argv[2], int(sys.argv[4]), float(sys.argv[5])
    ports = [int(p) for p in sys.argv[3].split(",")]
    if mode == "initiations":
        key = mac1_key(base64.b64decode(sys.argv[6]))
        pool = [initiation(key) for _ in range(POOL)]
    elif mode == "garbage":
        pool = [garbage() for _ in range(POOL)]
    else:
        sys.exit(f"unknown mode {mode}")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    dsts = [(host, p) for p in ports]
    sent = cookies = 0
    start = time.monotonic()
    end = start + secs
    while True:
        now = time.monotonic()
        if now >= end:
            break
        # Ahead of the rate: wait for the schedule to catch up.
        due = start + sent / pps
        if due > now:
            time.sleep(min(due - now, end - now))
            continue
        for i in range(SLICE):
            try:
                s.sendto(pool[(sent + i) % POOL], dsts[(sent + i) % len(dsts)])
            except (BlockingIOError, ConnectionRefusedError):
                pass
        sent += SLICE
        while True:
            try:
                reply = s.recv(2048)
            except (BlockingIOError, ConnectionRefusedError):
                break
            if len(reply) == 64 and reply[0] == 3:
                cookies += 1
    print(f"sent {sent} received_cookies {cookies} seconds {time.monotonic() - start:.1f}")


if __name__ == "__main__":
    main()
