#!/usr/bin/env python3
"""Probes for the firewall lab (netns_firewall.sh): an echo server and the clients that ask
whether a port is reachable through the tunnel. Standard library only.

  fwprobe.py serve PORT...            TCP and UDP echo on every PORT, until killed
  fwprobe.py tcp HOST PORT SECS       exit 0 if a TCP echo round trip completes within SECS
  fwprobe.py udp HOST PORT SECS       exit 0 if a UDP echo comes back within SECS
  fwprobe.py until HOST PORT SECS     new TCP connections (0.1 s each) until one echoes; exit 1
                                      after SECS
  fwprobe.py hold HOST PORT           one TCP connection kept open: an echo every 0.2 s, a line
                                      "ok N" per echo; "broken: why" and exit 1 when it fails
"""
import socket
import sys
import threading
import time


def serve(ports):
    for port in ports:
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind(("0.0.0.0", port))
        tcp.listen(16)
        threading.Thread(target=accept_loop, args=(tcp,), daemon=True).start()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("0.0.0.0", port))
        threading.Thread(target=udp_loop, args=(udp,), daemon=True).start()
    print("serving", *ports, flush=True)
    threading.Event().wait()


def accept_loop(listener):
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=echo, args=(conn,), daemon=True).start()


def echo(conn):
    with conn:
        while True:
            data = conn.recv(4096)
            if not data:
                return
            conn.sendall(data)


def udp_loop(sock):
    while True:
        data, peer = sock.recvfrom(4096)
        sock.sendto(data, peer)


def tcp_round_trip(host, port, secs):
    try:
        with socket.create_connection((host, port), timeout=secs) as s:
            s.sendall(b"hello\n")
            return s.recv(16) == b"hello\n"
    except OSError:
        return False


def udp_round_trip(host, port, secs):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(secs)
        try:
            s.sendto(b"hello", (host, port))
            data, _ = s.recvfrom(16)
            return data == b"hello"
        except OSError:
            return False


def until(host, port, secs):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if tcp_round_trip(host, port, 0.1):
            return True
    return False


def hold(host, port):
    try:
        s = socket.create_connection((host, port), timeout=5)
    except OSError as e:
        print("broken:", e, flush=True)
        return False
    n = 0
    while True:
        try:
            s.sendall(b"hold\n")
            if s.recv(16) != b"hold\n":
                print("broken: wrong echo", flush=True)
                return False
        except OSError as e:
            print("broken:", e, flush=True)
            return False
        n += 1
        print("ok", n, flush=True)
        time.sleep(0.2)


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "serve":
        serve([int(p) for p in args])
    elif cmd == "tcp":
        return 0 if tcp_round_trip(args[0], int(args[1]), float(args[2])) else 1
    elif cmd == "udp":
        return 0 if udp_round_trip(args[0], int(args[1]), float(args[2])) else 1
    elif cmd == "until":
        return 0 if until(args[0], int(args[1]), float(args[2])) else 1
    elif cmd == "hold":
        return 0 if hold(args[0], int(args[1])) else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
