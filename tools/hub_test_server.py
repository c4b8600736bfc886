#!/usr/bin/env python3
"""A fake Hugging Face Hub on 127.0.0.1 for `sdw pipeline metadata`'s tests
(tests/cli/metadata.sh). Standard library only.

    hub_test_server.py --root DIR --port-file FILE --repo OWNER/NAME
                       [--token T] [--fail-first N] [--cut-first N] [--page-size K]
                       [--chunk-delay-ms MS] [--cdn]

Serves the files under DIR as the dataset repo:
  /api/datasets/REPO/tree/main?recursive=1   the Hub's listing: a JSON array of
        {"type": "file"|"directory", "oid", "size", "path", "lfs": {"oid": sha256,
        "size", "pointerSize"}} (lfs only for *.parquet, as LFS files), paginated
        by --page-size with a Link: <...>; rel="next" header (cursor=N)
  /datasets/REPO/resolve/main/PATH           the file, with Range (206/416)
  /plain/PATH                                the file, without Range support
  --cdn: resolve answers 302 to http://localhost:PORT/cdn/PATH (another host
        name, no token needed, Range supported), as the Hub does for LFS files
  /stats                                     JSON: requests, ranges, auth headers seen
Fault injection per file path: the first --fail-first requests answer 500;
the next --cut-first send the headers and half the body, then close.
--chunk-delay-ms: bodies go out in 16 KiB pieces with that pause after each.
--token T: every request but /stats needs "Authorization: Bearer T", else 401.
"""
import argparse
import hashlib
import json
import os
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATS = {"requests": {}, "ranges": [], "auth": [], "served_bytes": {}}
SEEN = {}


def listing(root):
    out = []
    for d, dirs, files in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(d, root)
        if rel != ".":
            out.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": rel})
        for f in sorted(files):
            p = os.path.join(d, f)
            path = os.path.relpath(p, root)
            data = open(p, "rb").read()
            e = {"type": "file", "oid": hashlib.sha1(data).hexdigest(), "size": len(data),
                 "path": path}
            if f.endswith(".parquet"):
                e["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                            "pointerSize": 134}
            out.append(e)
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def handle(self):
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away mid-body (an interrupted or killed download)

    def send_body(self, code, body, ctype="application/json", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        a = self.server.args
        u = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(u.path)
        if path == "/stats":
            with LOCK:
                return self.send_body(200, json.dumps(STATS).encode())
        with LOCK:
            STATS["requests"][path] = STATS["requests"].get(path, 0) + 1
            if path.startswith("/cdn/"):
                STATS.setdefault("cdn_auth", []).append(self.headers.get("Authorization"))
            else:
                STATS["auth"].append(self.headers.get("Authorization"))
        if a.token and not path.startswith("/cdn/") and self.headers.get("Authorization") != "Bearer " + a.token:
            return self.send_body(401, b'{"error":"Invalid credentials"}')
        api = "/api/datasets/%s/tree/main" % a.repo
        if path == api:
            q = urllib.parse.parse_qs(u.query)
            entries = listing(a.root) if q.get("recursive") == ["1"] else []
            start = int(q.get("cursor", ["0"])[0])
            extra = []
            if a.page_size:
                end = start + a.page_size
                if end < len(entries):
                    nxt = "http://127.0.0.1:%d%s?recursive=1&cursor=%d" % (
                        self.server.server_address[1], api, end)
                    extra.append(("Link", '<%s>; rel="next"' % nxt))
                entries = entries[start:end]
            return self.send_body(200, json.dumps(entries).encode(), extra=extra)
        prefix = "/datasets/%s/resolve/main/" % a.repo
        if a.cdn and path.startswith(prefix):
            # as the Hub sends LFS files to its CDN: another host name, same port
            loc = "http://localhost:%d/cdn/%s" % (self.server.server_address[1],
                                                  urllib.parse.quote(path[len(prefix):]))
            return self.send_body(302, b"", "text/plain", [("Location", loc)])
        ranged = path.startswith(prefix) or path.startswith("/cdn/")
        if path.startswith("/cdn/"):
            rel = path[len("/cdn/"):]
        elif ranged:
            rel = path[len(prefix):]
        elif path.startswith("/plain/"):
            rel = path[len("/plain/"):]
        else:
            return self.send_body(404, b"not found", "text/plain")
        full = os.path.realpath(os.path.join(a.root, rel))
        if not full.startswith(os.path.realpath(a.root) + os.sep) or not os.path.isfile(full):
            return self.send_body(404, b"not found", "text/plain")
        with LOCK:
            n = SEEN[rel] = SEEN.get(rel, 0) + 1
        if n <= a.fail_first:
            return self.send_body(500, b"injected failure", "text/plain")
        data = open(full, "rb").read()
        start = 0
        rng = self.headers.get("Range")
        if ranged and rng:
            with LOCK:
                STATS["ranges"].append([rel, rng])
            if not rng.startswith("bytes=") or not rng[6:].endswith("-"):
                return self.send_body(400, b"bad range", "text/plain")
            start = int(rng[6:-1])
            if start >= len(data):
                return self.send_body(416, b"", "text/plain",
                                      [("Content-Range", "bytes */%d" % len(data))])
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if ranged:
            self.send_header("Accept-Ranges", "bytes")
        if start:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        self.end_headers()
        if n <= a.fail_first + a.cut_first:
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            with LOCK:
                STATS["served_bytes"][rel] = STATS["served_bytes"].get(rel, 0) + len(body) // 2
            return
        if a.chunk_delay_ms:
            for i in range(0, len(body), 16384):
                self.wfile.write(body[i:i + 16384])
                self.wfile.flush()
                time.sleep(a.chunk_delay_ms / 1000)
        else:
            self.wfile.write(body)
        with LOCK:
            STATS["served_bytes"][rel] = STATS["served_bytes"].get(rel, 0) + len(body)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--repo", default="laion/laion2B-en-aesthetic")
    ap.add_argument("--token")
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--cut-first", type=int, default=0)
    ap.add_argument("--page-size", type=int, default=0)
    ap.add_argument("--chunk-delay-ms", type=int, default=0)
    ap.add_argument("--cdn", action="store_true")
    a = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.args = a
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
