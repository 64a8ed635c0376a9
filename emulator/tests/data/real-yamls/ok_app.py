"""A generic stand-in for a real service's image: answers 200 on every path (so a YAML's
httpGet probes on /health, /ready or /healthz pass) on $PORT, like any Cloud Run container."""
import http.server
import os


class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"ok {os.environ.get('K_SERVICE', '')} {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Ok).serve_forever()
