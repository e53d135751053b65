#!/usr/bin/env python3
"""Bounded HTTP load on a yolod daemon on loopback, for test-memory.sh and
bench/daemon-throughput.sh.

CONCURRENCY threads each keep one keep-alive connection and POST the image
file as the raw request body, one request at a time, until REQUESTS requests
have been sent in all or DURATION seconds have passed, whichever comes first.
Request i goes to PATH with the i-th of the --query strings, cycling, so
`--query variant=fp32 --query variant=int8` alternates the two variants.

Prints one JSON object: requests sent, replies by status, transport errors,
elapsed seconds, successful replies per second, and latency percentiles in
milliseconds (from sending the request to reading the whole reply). With
--check-field KEY, every 2xx reply must be JSON whose KEY equals the KEY
parameter of its request's query string; the others count as "mismatched"
and not as successes. Exits 0 when every request sent succeeded.
Refuses any host that is not a loopback address.
"""
import argparse
import http.client
import ipaddress
import json
import socket
import sys
import threading
import time
import urllib.parse


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, int(-(-fraction * len(sorted_values) // 1)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def check_loopback(host):
    for info in socket.getaddrinfo(host, None):
        if not ipaddress.ip_address(info[4][0]).is_loopback:
            sys.exit(f"http_load.py: '{host}' resolves to {info[4][0]}, not a loopback address")


class Load:
    def __init__(self, args, body):
        self.args = args
        self.body = body
        self.lock = threading.Lock()
        self.sent = 0
        self.deadline = time.monotonic() + args.duration
        self.latencies = []
        self.statuses = {}
        self.errors = {}
        self.mismatched = 0

    def next_index(self):
        """Claims the index of the next request, or None when the load is over."""
        with self.lock:
            if self.sent >= self.args.requests or time.monotonic() >= self.deadline:
                return None
            self.sent += 1
            return self.sent - 1

    def record(self, status, latency_ms, error=None, matched=True):
        with self.lock:
            if error:
                self.errors[error] = self.errors.get(error, 0) + 1
                return
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if not 200 <= status < 300:
                return
            if matched:
                self.latencies.append(latency_ms)
            else:
                self.mismatched += 1

    def matches(self, query, data):
        """Whether the reply's field equals the request's query parameter."""
        field = self.args.check_field
        if not field:
            return True
        want = urllib.parse.parse_qs(query).get(field, [None])[0]
        try:
            return json.loads(data).get(field) == want
        except (ValueError, AttributeError):
            return False

    def client(self, url):
        connection = None
        headers = {"Content-Type": "application/octet-stream"}
        while True:
            index = self.next_index()
            if index is None:
                break
            query = self.args.query[index % len(self.args.query)] if self.args.query else ""
            target = url.path or "/"
            if query:
                target += ("&" if "?" in target else "?") + query
            start = time.monotonic()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(url.hostname, url.port or 80,
                                                            timeout=self.args.timeout)
                connection.request("POST", target, body=self.body, headers=headers)
                reply = connection.getresponse()
                data = reply.read()
                latency_ms = (time.monotonic() - start) * 1e3
                self.record(reply.status, latency_ms,
                            matched=not 200 <= reply.status < 300 or self.matches(query, data))
                if reply.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as e:
                self.record(None, None, error=type(e).__name__)
                if connection is not None:
                    connection.close()
                connection = None
        if connection is not None:
            connection.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="e.g. http://127.0.0.1:8080/v1/detect")
    parser.add_argument("body", help="file sent as each request's body")
    parser.add_argument("--concurrency", type=int, default=4, help="parallel connections")
    parser.add_argument("--requests", type=int, default=100000, help="maximum requests in total")
    parser.add_argument("--duration", type=float, default=60.0, help="maximum seconds of sending")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument("--query", action="append", default=[],
                        help="query string for the request, cycled over requests; repeatable")
    parser.add_argument("--check-field", metavar="KEY",
                        help="require the JSON reply's KEY to equal the query's KEY parameter")
    args = parser.parse_args()
    if args.concurrency < 1 or args.requests < 1 or args.duration <= 0:
        parser.error("--concurrency and --requests must be at least 1, --duration above 0")

    url = urllib.parse.urlsplit(args.url)
    if url.scheme != "http" or not url.hostname:
        parser.error(f"invalid URL '{args.url}' (expected http://HOST:PORT/PATH)")
    check_loopback(url.hostname)
    if url.query:
        url = url._replace(path=url.path + "?" + url.query)
    with open(args.body, "rb") as f:
        body = f.read()

    load = Load(args, body)
    start = time.monotonic()
    threads = [threading.Thread(target=load.client, args=(url,)) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start

    latencies = sorted(round(v, 2) for v in load.latencies)
    ok = len(latencies)
    print(json.dumps({
        "requests": load.sent,
        "ok": ok,
        "statuses": {str(k): v for k, v in sorted(load.statuses.items())},
        "errors": load.errors,
        "mismatched": load.mismatched,
        "concurrency": args.concurrency,
        "elapsed_s": round(elapsed, 3),
        "requests_per_second": round(ok / elapsed, 2),
        "p50_ms": percentile(latencies, 0.50),
        "p90_ms": percentile(latencies, 0.90),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": latencies[-1] if latencies else None,
    }))
    return 0 if ok == load.sent else 1


if __name__ == "__main__":
    sys.exit(main())
