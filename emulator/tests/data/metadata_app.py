"""A Cloud Run service that authenticates the way real ones do: with Google's own library.

GET /?audience=AUD  JSON: what google.auth.default() found (project, account, access token),
                    an ID token from google.oauth2.id_token.fetch_id_token for AUD, and its
                    claims as google-auth (with PyJWT) verified them against emu's JWKS.
Any failure is a 500 with the traceback, so the test says what went wrong.
"""

import json
import os
import sys
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

# On Cloud Run none of these is set; a developer's own would win over the metadata server.
for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"):
    os.environ.pop(name, None)

import google.auth  # noqa: E402
import google.auth.transport.requests  # noqa: E402
import google.oauth2.id_token  # noqa: E402


def identity(audience):
    request = google.auth.transport.requests.Request()
    credentials, project = google.auth.default()
    credentials.refresh(request)
    token = google.oauth2.id_token.fetch_id_token(request, audience)
    host = os.environ["GCE_METADATA_HOST"]
    claims = google.oauth2.id_token.verify_token(
        token, request, audience=audience, certs_url=f"http://{host}/emu/jwks.json"
    )
    return {
        "project_id": project,
        "credentials": type(credentials).__module__,
        "email": credentials.service_account_email,
        "access_token": credentials.token,
        "id_token": token,
        "verified_claims": claims,
        "metadata_host": host,
        "metadata_ip": os.environ.get("GCE_METADATA_IP"),
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        query = parse_qs(urlparse(self.path).query)
        try:
            status, body, kind = 200, json.dumps(identity(query["audience"][0])), "application/json"
        except Exception:  # the test shows this text
            status, body, kind = 500, traceback.format_exc(), "text/plain"
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        sys.stdout.write("%s\n" % (fmt % args))


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
