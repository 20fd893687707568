#!/usr/bin/env bash
# Builds the app into DIR (default dist/): byte-compiled module, a launcher, the version.
set -euo pipefail
out=${1:-dist}
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$out"
mkdir -p "$out/lib" "$out/bin"
cp "$here/app/wordcount.py" "$out/lib/"
python3 -m py_compile "$out/lib/wordcount.py"
cp "$here/VERSION" "$out/VERSION"
cat > "$out/bin/wordcount" <<'SH'
#!/bin/sh
here=$(cd "$(dirname "$0")/.." && pwd)
exec python3 "$here/lib/wordcount.py" "$@"
SH
chmod +x "$out/bin/wordcount"
echo "built wordcount $(cat "$out/VERSION") into $out/"
