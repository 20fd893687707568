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


def version():
    """The version the build wrote next to lib/ (`VERSION`), or `dev`."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        with open(os.path.join(here, "..", "VERSION"), encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return "dev"


def serve(port):
    """Serve over HTTP on 127.0.0.1:`port`: GET /healthz, GET /version, POST / (counts)."""
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Handler(BaseHTTPRequestHandler):
        def reply(self, code, text):
            body = (text + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/healthz":
                self.reply(200, "ok")
            elif self.path in ("/", "/version"):
                self.reply(200, f"wordcount {version()}")
            else:
                self.reply(404, "not found")

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            text = self.rfile.read(length).decode("utf-8", "replace")
            self.reply(200, "%d %d %d" % count(text))

        def log_message(self, *args):
            pass

    HTTPServer(("127.0.0.1", port), Handler).serve_forever()


def main(argv):
    if len(argv) == 3 and argv[1] == "--serve":
        serve(int(argv[2]))
        return 0
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
