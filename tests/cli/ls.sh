#!/usr/bin/env bash
# sdw ls on hand-made run directories (job.json written here, no jobs run):
#  - states as job.json says; an active state whose pid is gone on this host is
#    "dead"; a live pid stays "running"; another host's job is not judged;
#  - runs up to three levels below DIR are found, each once even when two DIRs
#    reach it, nothing inside a run (checkpoints/) is listed;
#  - default DIRs ./runs and .; --json gives the fields; no runs: exit 0 and a
#    message; a DIR that is not a directory: exit 1; unknown option: exit 2.
set -euo pipefail
cd "$(dirname "$0")/../.."
case $SDW in /*) ;; *) SDW=$PWD/$SDW ;; esac
PY=$PWD/.venv-test/bin/python
tmp=$(mktemp -d)
sleeper=
cleanup() {
  [ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  exit 1
}

sleep 60 &
sleeper=$!
# a pid that certainly is gone: a child that has exited and been reaped
true &
gone=$!
wait "$gone"
host=$(hostname)
now=$(date +%s)
job() { # DIR STATE PID HOST STEP
  mkdir -p "$1"
  printf '{"format":"sdw-job/1","pid":%s,"host":"%s","state":"%s","step":%s,"epoch":1,"total_steps":100,"loss":0.25,"lr":1e-05,"img_per_s":12.5,"eta_s":3,"last_checkpoint":"","error":"","updated":%s}\n' \
    "$3" "$4" "$2" "$5" "$now" >"$1/job.json"
}
cd "$tmp"
job runs/live running "$sleeper" "$host" 10
job runs/killed running "$gone" "$host" 20
job runs/paused-gone paused "$gone" "$host" 21
job runs/done finished "$gone" "$host" 100
job runs/elsewhere running "$gone" "some-other-host" 30
job runs/g1/g2/deep failed "$gone" "$host" 40
job runs/g1/g2/g3/too-deep running "$sleeper" "$host" 50
job runs/done/checkpoints/inner running "$sleeper" "$host" 60
job top finished "$gone" "$host" 70

"$SDW" ls >out.txt
cat >want.txt <<'T'
runs/done finished 100/100
runs/elsewhere running 30/100
runs/g1/g2/deep failed 40/100
runs/killed dead 20/100
runs/live running 10/100
runs/paused-gone dead 21/100
top finished 70/100
T
awk 'NR > 1 {print $1, $2, $3}' out.txt >got.txt
diff want.txt got.txt || { cat out.txt; fail "sdw ls table"; }
head -1 out.txt | grep -E '^RUN +STATE +STEP +LOSS +IMG/S +UPDATED$' >/dev/null || fail "header"
grep -E '^runs/live .* 0\.25 +12\.5 +[0-9]+s ago$' out.txt >/dev/null || fail "loss/img/s/updated columns"

# explicit DIRs, --json, each run once
"$SDW" ls --json runs runs/g1 . >out.json
"$PY" - out.json <<'PYEOF'
import json, sys
runs = json.load(open(sys.argv[1]))
names = [r["run"] for r in runs]
# runs/g1 as a DIR reaches too-deep (3 levels below it); deep is reached from
# runs and runs/g1 but listed once
assert len(names) == len(set(r["run"].split("/")[-1] for r in runs)) == 8, names
assert "runs/g1/g2/g3/too-deep" in names and "runs/g1/g2/deep" in names, names
live = next(r for r in runs if r["run"].endswith("live"))
assert live["state"] == "running" and live["step"] == 10 and live["total_steps"] == 100, live
assert live["loss"] == 0.25 and live["img_per_s"] == 12.5 and live["epoch"] == 1, live
assert next(r for r in runs if r["run"].endswith("killed"))["state"] == "dead"
PYEOF

# nothing to list; errors
mkdir empty
(cd empty && "$SDW" ls >../empty.out 2>../empty.err) || fail "ls with no runs must exit 0"
[ ! -s empty.out ] && grep "no run directories" empty.err >/dev/null || fail "no-runs message"
set +e
"$SDW" ls runs missing-dir >/dev/null 2>err.txt
rc=$?
"$SDW" ls --bogus >/dev/null 2>&1
rc2=$?
set -e
[ $rc -eq 1 ] && grep "missing-dir is not a directory" err.txt >/dev/null || fail "missing DIR: rc $rc"
[ $rc2 -eq 2 ] || fail "unknown option: rc $rc2"
echo "ls: ok"
