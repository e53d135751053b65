#!/usr/bin/env python3
"""Misbehaving HTTP clients for test-hostile-http.sh, on loopback only.

Each subcommand prints one result line for the shell script to compare,
or exits 1 with the reason. Every socket has a timeout, so no subcommand
runs longer than about 15 seconds.
"""
import argparse
import json
import socket
import struct
import sys
import threading
import time
import zlib


def connect(port, source="127.0.0.1", timeout=10.0):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def read_all(sock):
    """Reads until the server closes the connection or the timeout passes."""
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return data


def cmd_raw(args):
    """Sends stdin as the whole request; prints the status, writes the body to --out."""
    request = sys.stdin.buffer.read()
    sock = connect(args.port)
    # The server may reply and close before the request is all sent (431 for
    # an oversized header); what it sent is still read.
    try:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    reply = read_all(sock)
    sock.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    status = head.split(b"\r\n")[0].split(b" ")
    with open(args.out, "wb") as f:
        f.write(body)
    print(status[1].decode() if len(status) > 1 else "none")
    return 0


def cmd_trickle(args):
    """Sends a body one byte every 0.5 s; prints the seconds until the server closes."""
    sock = connect(args.port, timeout=0.5)
    start = time.monotonic()
    sock.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: test\r\nContent-Length: 100000\r\n\r\n\xff\xd8")
    while time.monotonic() - start < args.limit:
        try:
            sock.sendall(b"\x00")
        except OSError:
            break
        try:
            if sock.recv(4096) == b"":
                break
        except socket.timeout:
            pass
        except OSError:
            break
    sock.close()
    print(f"{time.monotonic() - start:.1f}")
    return 0


SLOW_REQUEST = b"POST /v1/detect HTTP/1.1\r\nHost: test\r\nX-Padding: " + b"p" * 200 + b"\r\n"


def trickle_until_closed(sock, data, interval, limit):
    """Sends data one byte every interval seconds until the server closes the
    connection or limit seconds pass. Returns the seconds the connection
    stayed open, or None if it was still open at the limit."""
    start = time.monotonic()
    sock.settimeout(interval)
    for byte in data:
        if time.monotonic() - start >= limit:
            return None
        try:
            sock.sendall(bytes([byte]))
            if sock.recv(4096) == b"":
                return time.monotonic() - start
        except socket.timeout:
            pass
        except OSError:
            return time.monotonic() - start
    return None


def get_healthz(sock):
    """Sends GET /healthz on a kept-alive connection; returns the status or "none"."""
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return "none"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            return "none"
        body += chunk
    return head.split(b" ")[1].decode()


def cmd_slow_headers(args):
    """Opens --clients connections that send request headers one byte every
    --interval seconds, and GET /healthz on another connection --healthz-at
    seconds after they opened.

    Prints "closed=N max=SECONDS healthz=STATUS": how many of the slow
    connections the server closed within --limit seconds, the longest time
    one of them stayed open, and the status of the health check ("none"
    when the connection was closed unanswered).
    """
    durations = [None] * args.clients
    socks = [connect(args.port) for _ in range(args.clients)]

    def run(i):
        durations[i] = trickle_until_closed(socks[i], SLOW_REQUEST, args.interval, args.limit)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    time.sleep(args.healthz_at)
    other = connect(args.port, timeout=5.0)
    try:
        healthz = get_healthz(other)
    except OSError:
        healthz = "none"
    other.close()
    for thread in threads:
        thread.join()
    for sock in socks:
        sock.close()
    closed = [d for d in durations if d is not None]
    longest = max(closed) if closed else 0.0
    print(f"closed={len(closed)} max={longest:.1f} healthz={healthz}")
    return 0


def cmd_keep_alive(args):
    """Sends GET /healthz three times on one connection, --pause seconds
    apart, then trickles a fourth request's headers one byte every 0.5 s.

    Prints "replies=S1,S2,S3 trickle_closed=SECONDS idle_closed=SECONDS":
    the statuses, the seconds from the third reply until the server closed
    the trickling connection, and the seconds another connection stayed
    open idle after one reply ("open" when still open at --limit).
    """
    sock = connect(args.port)
    replies = []
    for i in range(3):
        if i > 0:
            time.sleep(args.pause)
        replies.append(get_healthz(sock))
    trickled = trickle_until_closed(sock, SLOW_REQUEST, 0.5, args.limit)
    sock.close()

    idle = connect(args.port)
    get_healthz(idle)
    start = time.monotonic()
    idle.settimeout(args.limit)
    try:
        idle_result = f"{time.monotonic() - start:.1f}" if idle.recv(4096) == b"" else "data"
    except socket.timeout:
        idle_result = "open"
    except OSError:
        idle_result = f"{time.monotonic() - start:.1f}"
    idle.close()

    trickle_result = "open" if trickled is None else f"{trickled:.1f}"
    print(f"replies={','.join(replies)} trickle_closed={trickle_result} idle_closed={idle_result}")
    return 0


def cmd_per_address(args):
    """Holds --limit idle connections from 127.0.0.1, then reports on two more.

    Prints "extra=closed" or "extra=open" for one more connection from
    127.0.0.1, then "other=STATUS" for GET /healthz from 127.0.0.2.
    """
    held = [connect(args.port) for _ in range(args.limit)]
    time.sleep(0.3)

    extra = connect(args.port, timeout=1.0)
    try:
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        reply = read_all(extra)
        extra_state = "open" if reply.startswith(b"HTTP/1.1 200") else "closed"
    except OSError:
        extra_state = "closed"
    extra.close()

    other = connect(args.port, source="127.0.0.2", timeout=5.0)
    other.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
    reply = read_all(other)
    other.close()
    for sock in held:
        sock.close()
    status = reply.split(b" ")[1].decode() if reply.startswith(b"HTTP/") else "none"
    print(f"extra={extra_state} other={status}")
    return 0


def cmd_json_error(args):
    """Checks that FILE is strict UTF-8 JSON {"error": {"code": CODE, ...}} and
    that the message contains each --contains word and is at most --max-length
    characters long."""
    raw = open(args.file, "rb").read()
    try:
        text = raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError as e:
        print(f"not valid UTF-8: {e}: {raw[:200]!r}")
        return 1
    try:
        body = json.loads(text)
    except ValueError as e:
        print(f"not JSON: {e}: {text[:200]!r}")
        return 1
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        print(f"no 'error' object in {text[:200]!r}")
        return 1
    problems = []
    if error.get("code") != args.code:
        problems.append(f"code {error.get('code')!r}, expected {args.code!r}")
    message = error.get("message", "")
    for word in args.contains or []:
        if word not in message:
            problems.append(f"message lacks {word!r}: {message[:300]!r}")
    if args.max_length and len(message) > args.max_length:
        problems.append(f"message has {len(message)} characters, expected at most {args.max_length}")
    for p in problems:
        print(p)
    return 1 if problems else 0


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def cmd_png(args):
    """Writes a black RGB PNG of SIZE x SIZE: a small file that is slow to decode."""
    row = b"\x00" * (1 + 3 * args.size)
    data = (b"\x89PNG\r\n\x1a\n"
            + png_chunk(b"IHDR", struct.pack(">IIBBBBB", args.size, args.size, 8, 2, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(row * args.size, 9))
            + png_chunk(b"IEND", b""))
    with open(args.out, "wb") as f:
        f.write(data)
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("raw", help="send stdin as a raw request")
    p.add_argument("port", type=int)
    p.add_argument("--out", required=True)
    p.set_defaults(run=cmd_raw)

    p = sub.add_parser("trickle", help="send a body one byte every 0.5 s")
    p.add_argument("port", type=int)
    p.add_argument("--limit", type=float, default=10.0, help="give up after this many seconds")
    p.set_defaults(run=cmd_trickle)

    p = sub.add_parser("slow-headers", help="send request headers one byte at a time")
    p.add_argument("port", type=int)
    p.add_argument("--clients", type=int, required=True)
    p.add_argument("--interval", type=float, default=0.5, help="seconds between bytes")
    p.add_argument("--healthz-at", type=float, default=0.75,
                   help="seconds after the slow connections opened")
    p.add_argument("--limit", type=float, default=10.0, help="give up after this many seconds")
    p.set_defaults(run=cmd_slow_headers)

    p = sub.add_parser("keep-alive", help="requests and slow headers on a kept-alive connection")
    p.add_argument("port", type=int)
    p.add_argument("--pause", type=float, required=True, help="seconds between the requests")
    p.add_argument("--limit", type=float, default=10.0, help="give up after this many seconds")
    p.set_defaults(run=cmd_keep_alive)

    p = sub.add_parser("per-address", help="exceed the connections of one client address")
    p.add_argument("port", type=int)
    p.add_argument("--limit", type=int, required=True)
    p.set_defaults(run=cmd_per_address)

    p = sub.add_parser("json-error", help="a strict UTF-8 JSON error reply")
    p.add_argument("file")
    p.add_argument("--code", required=True)
    p.add_argument("--contains", action="append")
    p.add_argument("--max-length", type=int, default=0)
    p.set_defaults(run=cmd_json_error)

    p = sub.add_parser("png", help="write a black square PNG")
    p.add_argument("size", type=int)
    p.add_argument("--out", required=True)
    p.set_defaults(run=cmd_png)

    args = parser.parse_args()
    try:
        return args.run(args)
    except OSError as e:
        print(f"connection failed: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
