#!/usr/bin/env python3
"""A loopback HTTP/1.1 server for the download stage's tests and benchmark
(tests/cli/download.sh, bench/bench_download.sh). Standard library only.

    http_test_server.py --root DIR --port-file FILE [--port 0]

Binds 127.0.0.1 (port 0: any free one, written to --port-file once
listening) and serves, with keep-alive:

  /img/NAME                 the file DIR/NAME (Content-Type from the extension)
  /status/CODE              an empty response with that status
  /slow/MS/NAME             NAME after MS milliseconds
  /stall/NAME               headers and half of NAME, then nothing (for a minute)
  /stall-headers/NAME       nothing at all (for a minute)
  /redirect/N/NAME          a 302 chain of N hops ending at /img/NAME
  /big-cl/BYTES             Content-Length: BYTES, then that many bytes, slowly
  /big-chunked/BYTES        BYTES bytes chunked, without a length
  /optout/VALUE/NAME        NAME with "X-Robots-Tag: VALUE" (VALUE URL-encoded;
                            "|" separates several X-Robots-Tag headers)
  /flaky/N/ID/NAME          503 for the first N requests of ID, then NAME
  /stats                    JSON: requests per path and the user agents seen

Every request is counted (by path) for /stats. SIGTERM ends it.
"""
import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
         ".webp": "image/webp", ".html": "text/html", ".txt": "text/plain"}


class State:
    def __init__(self, root):
        self.root = root
        self.lock = threading.Lock()
        self.hits = {}
        self.agents = {}
        self.flaky = {}
        self.cache = {}

    def read(self, name):
        with self.lock:
            data = self.cache.get(name)
        if data is None:
            path = os.path.join(self.root, name)
            if "/" in name or name.startswith(".") or not os.path.isfile(path):
                return None
            with open(path, "rb") as f:
                data = f.read()
            with self.lock:
                self.cache[name] = data
        return data


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as web servers set it on keep-alive connections: without it
    # a response's last segment can wait for a delayed ACK (40 ms)
    disable_nagle_algorithm = True
    server_version = "sdw-test"
    sys_version = ""

    def log_message(self, fmt, *args):  # quiet
        pass

    def send_body(self, code, data, ctype="application/octet-stream", headers=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_file(self, name, headers=()):
        data = self.server.state.read(name)
        if data is None:
            self.send_body(404, b"not found\n", "text/plain")
            return
        ext = os.path.splitext(name)[1].lower()
        self.send_body(200, data, TYPES.get(ext, "application/octet-stream"), headers)

    def do_GET(self):
        st = self.server.state
        path = urllib.parse.urlsplit(self.path).path
        with st.lock:
            st.hits[path] = st.hits.get(path, 0) + 1
            ua = self.headers.get("User-Agent", "")
            st.agents[ua] = st.agents.get(ua, 0) + 1
        parts = path.strip("/").split("/")
        kind = parts[0]
        try:
            if kind == "img" and len(parts) == 2:
                self.send_file(parts[1])
            elif kind == "status" and len(parts) == 2:
                self.send_body(int(parts[1]), b"", "text/plain")
            elif kind == "slow" and len(parts) == 3:
                time.sleep(int(parts[1]) / 1000.0)
                self.send_file(parts[2])
            elif kind == "stall" and len(parts) == 2:
                data = st.read(parts[1]) or b"x" * 1000
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                time.sleep(60)
                self.close_connection = True
            elif kind == "stall-headers":
                time.sleep(60)
                self.close_connection = True
            elif kind == "redirect" and len(parts) == 3:
                n = int(parts[1])
                target = "/img/%s" % parts[2] if n <= 0 else "/redirect/%d/%s" % (n - 1, parts[2])
                self.send_body(302, b"", "text/plain", [("Location", target)])
            elif kind == "big-cl" and len(parts) == 2:
                size = int(parts[1])
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                chunk = b"\0" * 65536
                sent = 0
                while sent < size:
                    n = min(len(chunk), size - sent)
                    self.wfile.write(chunk[:n])
                    sent += n
                    time.sleep(0.01)
            elif kind == "big-chunked" and len(parts) == 2:
                size = int(parts[1])
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b"\xff" * 65536
                sent = 0
                while sent < size:
                    n = min(len(chunk), size - sent)
                    self.wfile.write(b"%x\r\n" % n + chunk[:n] + b"\r\n")
                    sent += n
                self.wfile.write(b"0\r\n\r\n")
            elif kind == "optout" and len(parts) == 3:
                values = urllib.parse.unquote(parts[1]).split("|")
                self.send_file(parts[2], [("X-Robots-Tag", v) for v in values])
            elif kind == "flaky" and len(parts) == 4:
                n, key = int(parts[1]), parts[2]
                with st.lock:
                    seen = st.flaky.get(key, 0)
                    st.flaky[key] = seen + 1
                if seen < n:
                    self.send_body(503, b"try again\n", "text/plain")
                else:
                    self.send_file(parts[3])
            elif kind == "stats":
                with st.lock:
                    body = json.dumps({"hits": st.hits, "agents": st.agents}).encode()
                self.send_body(200, body, "application/json")
            else:
                self.send_body(404, b"not found\n", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        # clients that hang up (timeouts, size limits) are part of the tests
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    args = ap.parse_args()
    server = Server(("127.0.0.1", args.port), Handler)
    server.state = State(args.root)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    try:
        server.serve_forever(poll_interval=0.1)
    except (KeyboardInterrupt, SystemExit):
        pass


if __name__ == "__main__":
    main()
