#!/usr/bin/env bash
# Every option that a command's --help mentions must be documented in its man
# page (man/sdw-<command>.1 when it exists, otherwise man/sdw.1), and every
# command in `sdw --help` must appear in man/sdw.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
fail=0
commands=$("$SDW" --help | awk '/^commands:/{on=1; next} on && /^  [a-z]/{print $1}')
for cmd in $commands; do
  if ! grep -q "^\.It Cm $cmd\b" man/sdw.1; then
    echo "man/sdw.1 does not document the command '$cmd'"
    fail=1
  fi
  page=man/sdw-$cmd.1
  [ -f "$page" ] || page=man/sdw.1
  text=$(mandoc -T utf8 "$page" | sed 's/.\x08//g')
  for opt in $("$SDW" "$cmd" --help | grep -oE '(^|[^A-Za-z0-9-])--[a-z][a-z0-9-]*' | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u); do
    if ! grep -qF -- "$opt" <<<"$text"; then
      echo "$page does not document '$cmd $opt'"
      fail=1
    fi
  done
done
exit $fail
