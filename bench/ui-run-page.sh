#!/usr/bin/env bash
# The web UI's run page in headless Chromium: a run with a 50-job graph and a 100,000-line log
# (100 chunks). Runs the browser test (crates/server/tests/ui_browser.rs + ui-tests/run.mjs)
# N times and prints the median of each figure it measures in the browser:
#   big_run_first_contentful_paint_ms  first paint of /runs/ID (graph, header, empty log box)
#   big_run_dom_content_loaded_ms      page.goto until DOMContentLoaded
#   big_log_all_lines_loaded_ms        until all 100,000 lines arrived over SSE and are searchable
#   big_log_raw_fetch_ms               floor: fetch() of the same log as one text/plain response
#   big_log_search_ms, big_log_line_link_ms, big_log_scroll_frame_median_ms
# Needs chromium, node and `npm ci --prefix ui-tests`.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-5}
cargo build -p server --tests -q 2>/dev/null || cargo build -p server --tests
BIN=$(cargo test -p server --test ui_browser --no-run --message-format=json 2>/dev/null \
  | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{for(const l of s.split("\n")){try{const m=JSON.parse(l);if(m.executable&&m.target&&m.target.name==="ui_browser")console.log(m.executable)}catch(e){}}})' | tail -1)
out=$(mktemp)
for i in $(seq "$N"); do
  (cd crates/server && "$BIN" ui_in_a_real_browser --exact --nocapture 2>&1) | grep '^FIGURES ' | head -1 | sed 's/^FIGURES //' >> "$out"
done
node -e '
const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
const keys = Object.keys(rows[0]);
const med = (a) => { a = a.filter((x) => x !== null).sort((x, y) => x - y); return a.length ? a[Math.floor((a.length - 1) / 2)] : null; };
console.log(`runs: ${rows.length}`);
for (const k of keys) console.log(`${k}\t${med(rows.map((r) => r[k]))}`);
const a = med(rows.map((r) => r.big_log_all_lines_loaded_ms)), b = med(rows.map((r) => r.big_log_raw_fetch_ms));
console.log(`all lines loaded / raw fetch floor: ${(a / b).toFixed(1)}x`);
' "$out"
