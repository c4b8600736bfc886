#!/usr/bin/env bash
# sdw tokenize against openai/CLIP's ids for the 158 prompts of
# tests/data/clip/tokenizer_cases.tsv (exact), the --mask format, the
# default (Hugging Face) behaviour, prompt arguments, and the error for a
# line that is not a JSON string.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${SDW:=build/sdw}"
cases=tests/data/clip/tokenizer_cases.tsv
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 158/158 through --jsonl, clip mode: byte-exact lines.
cut -f1 "$cases" >"$tmp/in.jsonl"
cut -f2 "$cases" >"$tmp/want.txt"
"$SDW" tokenize --tokenizer clip --jsonl <"$tmp/in.jsonl" >"$tmp/got.txt"
if ! cmp -s "$tmp/got.txt" "$tmp/want.txt"; then
  diff <(cat -n "$tmp/got.txt") <(cat -n "$tmp/want.txt") | head -n 6
  echo "FAIL: sdw tokenize --tokenizer clip --jsonl differs from $cases"
  exit 1
fi
[ "$(wc -l <"$tmp/got.txt")" -eq 158 ]

# --mask: "77 ids<TAB>77 mask values"; the ids part is unchanged and the mask
# is 1 up to and including the first 49407 (no case but line 124 types a
# literal <|endoftext|>).
"$SDW" tokenize --tokenizer clip --mask --jsonl <"$tmp/in.jsonl" >"$tmp/mask.txt"
[ "$(wc -l <"$tmp/mask.txt")" -eq 158 ]
cut -f1 "$tmp/mask.txt" | cmp -s - "$tmp/want.txt"
awk -F'\t' 'NR != 124 {
  n = split($1, id, " "); m = split($2, mk, " ")
  if (n != 77 || m != 77 || NF != 2) { print "line " NR ": bad field counts"; exit 1 }
  first = 0
  for (i = 1; i <= 77; i++) if (!first && id[i] == 49407) first = i
  for (i = 1; i <= 77; i++) if (mk[i] != (i <= first ? 1 : 0)) { print "line " NR ": mask[" i "]"; exit 1 }
}' "$tmp/mask.txt"

# The default is Hugging Face's CLIPTokenizer: it keeps "&amp" that ftfy
# leaves alone (ids from transformers 4.46.3 CLIPTokenizer, same vocabulary).
hf=$("$SDW" tokenize "Fish &amp chips &copy 2020")
want_hf="49406 2759 261 6259 8855 261 4509 273 271 273 271 49407"
[ "$(echo "$hf" | cut -d' ' -f1-12)" = "$want_hf" ]
[ "$(echo "$hf" | wc -w)" -eq 77 ]
clip=$("$SDW" tokenize --tokenizer clip "Fish &amp chips &copy 2020")
[ "$clip" = "$(sed -n 59p "$tmp/want.txt")" ]

# Prompt arguments: one line each, same ids as --jsonl.
two=$("$SDW" tokenize --tokenizer clip "a stack of pancakes with syrup and berries" \
  "A close up photo of a ladybug on a leaf")
[ "$two" = "$(head -n 2 "$tmp/want.txt")" ]

# A malformed line: the lines before it are printed, then one error line
# naming it, exit status 1.
printf '"ok"\n"unterminated\n"never reached"\n' >"$tmp/bad.jsonl"
set +e
"$SDW" tokenize --jsonl <"$tmp/bad.jsonl" >"$tmp/bad.out" 2>"$tmp/bad.err"
rc=$?
set -e
[ "$rc" -eq 1 ]
[ "$(wc -l <"$tmp/bad.out")" -eq 1 ]
[ "$(wc -l <"$tmp/bad.err")" -eq 1 ]
grep -q 'line 2' "$tmp/bad.err"
printf '42\n' | { "$SDW" tokenize --jsonl >/dev/null 2>"$tmp/num.err" && exit 1 || true; }
grep -q 'line 1' "$tmp/num.err"

# Usage errors exit 2; --help documents the output format and the modes.
set +e
"$SDW" tokenize --no-such-option x >/dev/null 2>&1
[ $? -eq 2 ] || exit 1
"$SDW" tokenize --tokenizer bert x >/dev/null 2>&1
[ $? -eq 2 ] || exit 1
"$SDW" tokenize >/dev/null 2>&1
[ $? -eq 2 ] || exit 1
set -e
"$SDW" tokenize --help | grep >/dev/null -- '--tokenizer hf|clip'
"$SDW" tokenize --help | grep >/dev/null -- '--mask'

# A missing vocabulary is one clear line naming the file.
set +e
err=$("$SDW" tokenize --vocab "$tmp/nope.txt.gz" x 2>&1)
rc=$?
set -e
[ "$rc" -eq 1 ]
[ "$(echo "$err" | wc -l)" -eq 1 ]
echo "$err" | grep -q "$tmp/nope.txt.gz"
echo "tokenize: 158/158 cases exact"
