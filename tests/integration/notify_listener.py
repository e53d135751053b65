"""Stands in for systemd's notification socket in the integration tests.

Usage: notify_listener.py ADDRESS OUTFILE [SECONDS]

Binds an AF_UNIX datagram socket at ADDRESS (a path, or @name for an
abstract socket) and appends one line per datagram to OUTFILE: the
monotonic receive time in seconds, a space, and the datagram as a JSON
string. Creates OUTFILE once the socket is bound, and exits after SECONDS
(default 120) so a failed test cannot leave it running.
"""
import json
import socket
import sys
import time


def main():
    address, out_path = sys.argv[1], sys.argv[2]
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 120.0
    deadline = time.monotonic() + seconds

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + address[1:] if address.startswith("@") else address)
    with open(out_path, "w", encoding="utf-8") as out:
        out.flush()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            sock.settimeout(remaining)
            try:
                data = sock.recv(4096)
            except socket.timeout:
                return
            text = data.decode("utf-8", errors="replace")
            out.write(f"{time.monotonic():.6f} {json.dumps(text)}\n")
            out.flush()


if __name__ == "__main__":
    main()
