#!/usr/bin/env bash
# `sdw pipeline metadata` against a fake Hugging Face Hub on 127.0.0.1
# (tools/hub_test_server.py, started here):
#  1. a repo listed in pages (Link rel="next"), a token required, the first 2
#     requests of every file answered 500 and the third cut half-way: every
#     *.parquet arrives byte-identical (cmp and the listing's SHA-256), other
#     files are left out, the cut transfers are resumed with Range, every
#     request carried the token, the manifest is done with the byte counts;
#  2. a rerun downloads nothing;
#  3. a .part left by a killed run is resumed (Range from its size), a .part
#     with wrong bytes is caught by the SHA-256, dropped and fetched again;
#  4. retries exhausted: exit 1, manifest failed with the reason http_5xx;
#  5. a bad token / no token: 401, one clear line, exit 1;
#  6. plain --url downloads and a --local folder (symlinks);
#  7. usage errors exit 2.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${SDW:=build/sdw}"
SDW=$(realpath "$SDW")

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
export SDW_METADATA_BACKOFF=0.02 # seconds before the first retry (doubled each time)
unset HF_TOKEN
export no_proxy=127.0.0.1,localhost NO_PROXY=127.0.0.1,localhost # loopback never via a proxy

repo=laion/laion2B-en-aesthetic
mkdir -p "$tmp/repo/data/sub"
head -c 300000 /dev/urandom >"$tmp/repo/data/part-0.parquet"
head -c 123457 /dev/urandom >"$tmp/repo/data/sub/part-1.parquet"
cp tests/data/filter/in/a.parquet "$tmp/repo/data/part-2.parquet"
echo "# card" >"$tmp/repo/data/README.md"

server() { # NAME args... -> sets $port
  local n=$1
  shift
  python3 tools/hub_test_server.py --root "$tmp/repo/data" --port-file "$tmp/$n.port" "$@" &
  pids+=($!)
  for _ in $(seq 100); do [ -s "$tmp/$n.port" ] && break; sleep 0.05; done
  port=$(cat "$tmp/$n.port")
}
mf() { # MANIFEST PYTHON-EXPR-over-m: true or not
  python3 -c 'import json, sys; m = json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' "$@"
}
stats() { # no curl binary needed
  python3 -c 'import sys, urllib.request
o = urllib.request.build_opener(urllib.request.ProxyHandler({}))
sys.stdout.write(o.open("http://127.0.0.1:%s/stats" % sys.argv[1]).read().decode())' "$1"
}
fail() {
  echo "FAIL: $*"
  exit 1
}
same_files() { # DIR
  for f in part-0.parquet sub/part-1.parquet part-2.parquet; do
    cmp -s "$tmp/repo/data/$f" "$1/$f" || fail "$1/$f differs"
  done
  [ ! -e "$1/README.md" ] || fail "README.md was downloaded"
  [ -z "$(find "$1" -name '*.part')" ] || fail ".part files left"
}

# --- 1. pages, token, 500s, cut transfers -------------------------------------------
server s1 --repo "$repo" --token secret --fail-first 2 --cut-first 1 --page-size 2
p1=$port
HF_TOKEN=secret "$SDW" pipeline metadata --data "$tmp/d1" --endpoint "http://127.0.0.1:$p1" \
  2>"$tmp/log" || { cat "$tmp/log"; fail "run 1"; }
same_files "$tmp/d1/metadata"
stats "$p1" >"$tmp/s1.json"
python3 - "$tmp/s1.json" "$tmp/d1/manifests/metadata.json" "$tmp/repo/data" <<'EOF'
import hashlib, json, os, sys
s = json.load(open(sys.argv[1])); m = json.load(open(sys.argv[2])); root = sys.argv[3]
def fail(msg): sys.exit("FAIL: " + msg)
files = ["part-0.parquet", "part-2.parquet", "sub/part-1.parquet"]
for f in files:
    n = s["requests"].get("/datasets/laion/laion2B-en-aesthetic/resolve/main/" + f)
    if n != 4: fail("%s: %s requests, expected 2 x 500 + 1 cut + 1 resumed" % (f, n))
    size = os.path.getsize(os.path.join(root, f))
    want = "bytes=%d-" % (size // 2)
    if [f, want] not in s["ranges"]: fail("%s: no resume from %s in %s" % (f, want, s["ranges"]))
    if s["served_bytes"][f] != size: fail("%s: %d bytes sent for %d" % (f, s["served_bytes"][f], size))
if set(s["auth"]) != {"Bearer secret"}: fail("auth headers %s" % set(s["auth"]))
if s["requests"].get("/api/datasets/laion/laion2B-en-aesthetic/tree/main") != 3:
    fail("listing pages: %s" % s["requests"])  # 5 entries (sub/ and 4 files) in pages of 2
if m["state"] != "done": fail("state " + m["state"])
c = m["counts"]
if (c["in"], c["out"], c["failed"], c["skipped"]) != (3, 3, 0, 0): fail("counts %s" % c)
total = sum(os.path.getsize(os.path.join(root, f)) for f in files)
if m["extra"]["bytes_total"] != total or m["extra"]["bytes_done"] != total:
    fail("bytes %s vs %d" % (m["extra"], total))
for f in files:
    h = hashlib.sha256(open(os.path.join(root, f), "rb").read()).hexdigest()
    assert h == hashlib.sha256(open(os.path.join(os.path.dirname(sys.argv[2]), "..", "metadata", f), "rb").read()).hexdigest()
EOF
"$SDW" pipeline status "$tmp/d1" | grep >/dev/null '^metadata  *done' || fail "status"

# --- 2. a rerun downloads nothing -------------------------------------------------------
before=$(stats "$p1" | python3 -c 'import json,sys; print(sum(v for k, v in json.load(sys.stdin)["requests"].items() if "/resolve/" in k))')
HF_TOKEN=secret "$SDW" pipeline metadata --data "$tmp/d1" --endpoint "http://127.0.0.1:$p1" 2>/dev/null
after=$(stats "$p1" | python3 -c 'import json,sys; print(sum(v for k, v in json.load(sys.stdin)["requests"].items() if "/resolve/" in k))')
[ "$before" = "$after" ] || fail "a rerun downloaded again ($before -> $after requests)"
mf "$tmp/d1/manifests/metadata.json" 'm["counts"]["skipped"] == 3 and m["state"] == "done"' || fail "rerun not counted as skipped"

# --- 3. a killed run's .part, and a .part with wrong bytes -------------------------------
server s2 --repo "$repo"
p2=$port
mkdir -p "$tmp/d3/metadata/sub"
head -c 1000 "$tmp/repo/data/part-0.parquet" >"$tmp/d3/metadata/part-0.parquet.part"
head -c 5000 /dev/urandom >"$tmp/d3/metadata/sub/part-1.parquet.part"
"$SDW" pipeline metadata --data "$tmp/d3" --endpoint "http://127.0.0.1:$p2/" 2>"$tmp/log" ||
  { cat "$tmp/log"; fail "run 3"; }
same_files "$tmp/d3/metadata"
stats "$p2" | python3 -c '
import json, sys
s = json.load(sys.stdin)
assert ["part-0.parquet", "bytes=1000-"] in s["ranges"], s["ranges"]
assert ["sub/part-1.parquet", "bytes=5000-"] in s["ranges"], s["ranges"]
# the bad .part: resumed once, refused by the SHA-256, then fetched whole
assert s["requests"]["/datasets/laion/laion2B-en-aesthetic/resolve/main/sub/part-1.parquet"] == 2, s
assert set(s["auth"]) == {None}, s["auth"]
' || fail "resume of .part files"
mf "$tmp/d3/manifests/metadata.json" 'm["failures"] == {} and m["counts"]["out"] == 3' || fail "a retried mismatch counted as a failure"

# --- 4. retries exhausted ------------------------------------------------------------------
server s4 --repo "$repo" --fail-first 100
set +e
"$SDW" pipeline metadata --data "$tmp/d4" --endpoint "http://127.0.0.1:$port" --retries 1 \
  2>"$tmp/log"
rc=$?
set -e
[ $rc -eq 1 ] || fail "exhausted retries: exit $rc"
mf "$tmp/d4/manifests/metadata.json" 'm["state"] == "failed" and m["failures"] == {"http_5xx": 3}' ||
  fail "manifest not failed with http_5xx"
grep -q 'HTTP 500' "$tmp/log" || fail "no HTTP 500 message"

# --- 5. bad token, no token ------------------------------------------------------------------
for t in wrong ""; do
  set +e
  if [ -n "$t" ]; then
    "$SDW" pipeline metadata --data "$tmp/d5" --endpoint "http://127.0.0.1:$p1" --token "$t" 2>"$tmp/log"
  else
    "$SDW" pipeline metadata --data "$tmp/d5" --endpoint "http://127.0.0.1:$p1" 2>"$tmp/log"
  fi
  rc=$?
  set -e
  [ $rc -eq 1 ] || fail "token '$t': exit $rc"
  [ "$(wc -l <"$tmp/log")" -eq 1 ] || { cat "$tmp/log"; fail "token '$t': not one line"; }
  grep -q '^sdw: pipeline metadata: HTTP 401 from .*token' "$tmp/log" || { cat "$tmp/log"; fail "token '$t': message"; }
done

# --- 6. plain URLs and a local folder ----------------------------------------------------------
"$SDW" pipeline metadata --data "$tmp/d6" --url "http://127.0.0.1:$p2/plain/part-0.parquet" \
  --url "http://127.0.0.1:$p2/plain/sub/part-1.parquet?download=1" 2>"$tmp/log" || { cat "$tmp/log"; fail "urls"; }
cmp -s "$tmp/repo/data/part-0.parquet" "$tmp/d6/metadata/part-0.parquet" || fail "url file 0"
cmp -s "$tmp/repo/data/sub/part-1.parquet" "$tmp/d6/metadata/part-1.parquet" || fail "url file 1"
"$SDW" pipeline metadata --data "$tmp/d7" --local "$tmp/repo/data" 2>"$tmp/log" || { cat "$tmp/log"; fail "local"; }
same_files "$tmp/d7/metadata"
[ -L "$tmp/d7/metadata/part-0.parquet" ] || fail "local files are not linked"
"$SDW" pipeline metadata --data "$tmp/d8" --local "$tmp/repo/data" --include '*.md' 2>/dev/null
[ -e "$tmp/d8/metadata/README.md" ] && [ ! -e "$tmp/d8/metadata/part-0.parquet" ] || fail "--include"

# --- 7. SIGINT and kill -9 in the middle of a transfer, then a resume ------------------------------
server s7 --repo "$repo" --chunk-delay-ms 30
p7=$port
wait_part() { # DIR: until some .part has bytes
  for _ in $(seq 200); do
    [ -n "$(find "$1" -name '*.part' -size +1k 2>/dev/null)" ] && return 0
    sleep 0.02
  done
  fail "no .part appeared in $1"
}
"$SDW" pipeline metadata --data "$tmp/d9" --endpoint "http://127.0.0.1:$p7" 2>"$tmp/log" &
pid=$!
wait_part "$tmp/d9/metadata"
kill -INT $pid
set +e
wait $pid
rc=$?
set -e
[ $rc -eq 130 ] || { cat "$tmp/log"; fail "SIGINT: exit $rc"; }
mf "$tmp/d9/manifests/metadata.json" 'm["state"] == "interrupted"' || fail "SIGINT: manifest not interrupted"
[ -n "$(find "$tmp/d9/metadata" -name '*.part' -size +1k)" ] || fail "SIGINT: the .part was not kept"
"$SDW" pipeline metadata --data "$tmp/d9" --endpoint "http://127.0.0.1:$p7" &
pid=$!
sleep 0.3
wait_part "$tmp/d9/metadata"
kill -9 $pid
wait $pid 2>/dev/null || true
"$SDW" pipeline metadata --data "$tmp/d9" --endpoint "http://127.0.0.1:$p2" 2>"$tmp/log" ||
  { cat "$tmp/log"; fail "resume after kill -9"; }
same_files "$tmp/d9/metadata"
stats "$p2" | python3 -c '
import json, sys
s = json.load(sys.stdin)
assert len(s["ranges"]) >= 3, s["ranges"]  # d3 resumed two, the kill -9 left at least one
' || fail "no Range resume after kill -9"

# --- 8. the Hub's redirect of LFS files to a CDN host: followed, Range kept, no token sent there --
server s8 --repo "$repo" --token secret --cdn --fail-first 1 --cut-first 1
HF_TOKEN=secret "$SDW" pipeline metadata --data "$tmp/d10" --endpoint "http://127.0.0.1:$port" \
  2>"$tmp/log" || { cat "$tmp/log"; fail "cdn run"; }
same_files "$tmp/d10/metadata"
stats "$port" | python3 -c '
import json, sys
s = json.load(sys.stdin)
assert set(s["auth"]) == {"Bearer secret"}, s["auth"]
assert set(s["cdn_auth"]) == {None}, s["cdn_auth"]  # the token stays on the Hub
assert any(r[1] != "bytes=0-" for r in s["ranges"]), s["ranges"]
' || fail "cdn redirect"

# --- 9. usage -------------------------------------------------------------------------------------
set +e
"$SDW" pipeline metadata 2>/dev/null
[ $? -eq 2 ] || fail "no --data is not a usage error"
"$SDW" pipeline metadata --data "$tmp/x" --retries x 2>/dev/null
[ $? -eq 2 ] || fail "bad --retries is not a usage error"
set -e
"$SDW" pipeline metadata --help | grep >/dev/null -- '--endpoint'
echo "metadata: ok"
