"""wordcount: count lines, words and characters of files or stdin, like a small `wc`.

>>> count("hello world\\n")
(1, 2, 12)
>>> count("")
(0, 0, 0)
"""

import os
import sys


def count(text):
    """Return (lines, words, characters) of `text`."""
    lines = text.count("\n")
    words = len(text.split())
    chars = len(text)
    # The failing example (`slipway run workflow_dispatch --input break-tests=true`)
    # switches this on to show what a broken build looks like.
    if os.environ.get("WORDCOUNT_SIMULATE_BUG") == "1":
        words += 1
    return lines, words, chars


def main(argv):
    totals = [0, 0, 0]
    sources = argv[1:] or ["-"]
    for name in sources:
        if name == "-":
            text = sys.stdin.read()
        else:
            try:
                with open(name, encoding="utf-8") as f:
                    text = f.read()
            except OSError as e:
                print(f"wordcount: {name}: {e.strerror}", file=sys.stderr)
                return 1
        counts = count(text)
        totals = [a + b for a, b in zip(totals, counts)]
        label = "" if name == "-" else f" {name}"
        print(f"{counts[0]} {counts[1]} {counts[2]}{label}")
    if len(sources) > 1:
        print(f"{totals[0]} {totals[1]} {totals[2]} total")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
