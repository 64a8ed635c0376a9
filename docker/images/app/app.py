"""emu-test/app: an HTTP service for emu's tests of services run from images.

GET /              200 "hello from <K_SERVICE or app> on <hostname>"
GET /env           the process environment as JSON (PORT, K_SERVICE, secrets as env, ...)
GET /file?path=P   the content of file P (secrets mounted as files), 404 when it is missing
GET /alloc?mib=N   allocate and keep N MiB more (touched, so it is resident); says the total kept
GET /sleep?ms=N    answer after N milliseconds (a request in flight)
GET /exit?code=N   answer, then exit with code N (a crash)

It listens on 0.0.0.0:$PORT (8080 by default) and prints "listening on PORT" once it does.
SIGTERM ends it after in-flight requests finish, unless IGNORE_SIGTERM=1 (to test the stop
deadline: SIGTERM, the grace period, then SIGKILL).
"""

import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

HELD = []  # memory kept by /alloc


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, body, content_type="text/plain; charset=utf-8"):
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def number(self, query, name, default):
        try:
            return int(query.get(name, [default])[0])
        except ValueError:
            return None

    def do_GET(self):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if url.path == "/":
            name = os.environ.get("K_SERVICE", "app")
            self.reply(200, f"hello from {name} on {socket.gethostname()}\n")
        elif url.path == "/env":
            self.reply(200, json.dumps(dict(os.environ), indent=1), "application/json")
        elif url.path == "/file":
            path = query.get("path", [""])[0]
            try:
                with open(path, "rb") as f:
                    self.reply(200, f.read(), "application/octet-stream")
            except OSError as e:
                self.reply(404, f"{path}: {e.strerror}\n")
        elif url.path == "/alloc":
            mib = self.number(query, "mib", "1")
            if mib is None or mib < 0:
                return self.reply(400, "mib must be a whole number of MiB\n")
            block = bytearray(mib * 1024 * 1024)
            for i in range(0, len(block), 4096):  # touch every page so it is resident
                block[i] = 1
            HELD.append(block)
            total = sum(len(b) for b in HELD) // (1024 * 1024)
            self.reply(200, f"holding {total} MiB\n")
        elif url.path == "/sleep":
            ms = self.number(query, "ms", "1000")
            if ms is None or ms < 0:
                return self.reply(400, "ms must be a whole number of milliseconds\n")
            time.sleep(ms / 1000)
            self.reply(200, f"slept {ms} ms\n")
        elif url.path == "/exit":
            code = self.number(query, "code", "1")
            if code is None:
                return self.reply(400, "code must be a whole number\n")
            self.reply(200, f"exiting with {code}\n")
            self.wfile.flush()
            os._exit(code)
        else:
            self.reply(404, f"no route {url.path}\n")

    def log_message(self, fmt, *args):
        sys.stdout.write("%s %s\n" % (self.address_string(), fmt % args))


def main():
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = False  # in-flight requests finish before the process exits
    if os.environ.get("IGNORE_SIGTERM") == "1":
        signal.signal(signal.SIGTERM, lambda *_: print("SIGTERM ignored", flush=True))
    else:
        # shutdown() waits for serve_forever to return, so it runs off the signal handler.
        def stop(*_):
            print("SIGTERM: shutting down", flush=True)
            threading.Thread(target=server.shutdown).start()

        signal.signal(signal.SIGTERM, stop)
    print(f"listening on {port}", flush=True)
    server.serve_forever()
    server.server_close()  # joins the request threads
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
