#!/usr/bin/env bash
# Compares the built launcher (BIN, default dist/bin/wordcount) with coreutils `wc`.
set -euo pipefail
bin=${BIN:-dist/bin/wordcount}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'alpha beta\ngamma\n\ndelta epsilon zeta\n' > "$tmp/a.txt"
printf 'one\n' > "$tmp/b.txt"
fail=0
for f in "$tmp/a.txt" "$tmp/b.txt"; do
  want=$(wc -l -w -m < "$f" | awk '{print $1, $2, $3}')
  got=$("$bin" < "$f")
  if [ "$got" = "$want" ]; then echo "ok   $(basename "$f"): $got"; else echo "FAIL $(basename "$f"): got '$got', wc says '$want'"; fail=1; fi
done
total=$("$bin" "$tmp/a.txt" "$tmp/b.txt" | tail -n1)
[ "$total" = "5 7 41 total" ] && echo "ok   total: $total" || { echo "FAIL total: $total"; fail=1; }
exit $fail
