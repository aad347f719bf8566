"""The example's sales "service": logs each POST to stdout and answers 200.

    python scripts/sales_webhook.py --port 8080

Used by the README walk-through (rule big-order-to-sales posts to http://127.0.0.1:8080/sales/notify).
Standard library only.
"""

from __future__ import annotations

import argparse
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace")
        key = self.headers.get("Idempotency-Key", "-")
        print(f"POST {self.path} idempotency-key={key} {body}", flush=True)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, format: str, *args: object) -> None:  # quiet: one line per POST above
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    server = HTTPServer((args.host, args.port), Handler)
    print(
        f"listening on http://{args.host}:{args.port}/ (Ctrl-C stops)", file=sys.stderr, flush=True
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
