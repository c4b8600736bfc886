#!/usr/bin/env bash
# Runs the C unit tests, then every tests/cli/*.sh (each one test), and prints
# the combined closing line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
: "${SDW:=build/sdw}" "${TEST_BIN:=build/sdw-tests}"
export SDW TEST_BIN SDW_TEST_DATA="$PWD/tests/data"
passed=0 failed=0

log=$(mktemp)
"$TEST_BIN" "$@" | tee "$log" | grep -v -E '^[0-9]+ passed, [0-9]+ failed$'
rc=${PIPESTATUS[0]}
summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n1)
rm -f "$log"
if [ -n "$summary" ]; then
  passed=$((passed + $(echo "$summary" | cut -d' ' -f1)))
  failed=$((failed + $(echo "$summary" | cut -d' ' -f3)))
elif [ "$rc" -ne 0 ]; then
  echo "FAIL $TEST_BIN crashed (exit $rc)"
  failed=$((failed + 1))
fi
if [ "$rc" -ne 0 ] && [ -n "$summary" ] && [ "$(echo "$summary" | cut -d' ' -f3)" = 0 ]; then
  echo "FAIL $TEST_BIN exited $rc after its summary"
  failed=$((failed + 1))
fi

if [ $# -eq 0 ]; then
  for t in tests/cli/*.sh; do
    [ -e "$t" ] || continue
    start=$(date +%s%N)
    if out=$(bash "$t" 2>&1); then
      passed=$((passed + 1))
      echo "ok   $t ($(( ($(date +%s%N) - start) / 1000000 )) ms)"
    else
      failed=$((failed + 1))
      echo "FAIL $t"
      echo "$out" | tail -n 30 | sed 's/^/  /'
    fi
  done
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
