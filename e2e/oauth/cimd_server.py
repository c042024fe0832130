"""A small HTTPS server of client ID metadata documents for the gateway's OAuth tests.

Usage: cimd_server.py CERT KEY [UPSTREAM] — listens on 127.0.0.1 on an ephemeral port and
prints `PORT <n>` once it accepts connections. With UPSTREAM (an http base URL), a GET of
any other path is passed to UPSTREAM + path and its answer relayed: the https face of a
gateway whose APP_URL is this server. Documents name themselves from the Host header:
  /client.json     a valid public client (redirect http://127.0.0.1/callback)
  /wrong-id.json   a document whose client_id is another URL
  /big.json        a valid document padded past 5 KiB
  /slow.json       answers headers, then stalls 20 s before the body
  /redirect.json   a 302 to /client.json (the gateway must not follow it)
"""

import http.server
import json
import ssl
import sys
import time
import urllib.error
import urllib.request

UPSTREAM = None


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def doc(self, path, **extra):
        d = {
            "client_id": f"https://{self.headers.get('Host')}{path}",
            "client_name": "CIMD Test Client",
            "redirect_uris": ["http://127.0.0.1/callback"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }
        d.update(extra)
        return d

    def send_json(self, body, status=200):
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "max-age=60")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):
        if self.path == "/client.json":
            self.send_json(self.doc(self.path))
        elif self.path == "/wrong-id.json":
            self.send_json(self.doc(self.path, client_id="https://elsewhere.example/client.json"))
        elif self.path == "/big.json":
            self.send_json(self.doc(self.path, padding="x" * 8000))
        elif self.path == "/slow.json":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.flush()
            time.sleep(20)
        elif self.path == "/redirect.json":
            self.send_response(302)
            self.send_header("Location", "/client.json")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif UPSTREAM:
            self.relay()
        else:
            self.send_json({"error": "not found"}, 404)

    def relay(self):
        req = urllib.request.Request(UPSTREAM + self.path, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, ctype, raw = r.status, r.headers.get("Content-Type", ""), r.read()
        except urllib.error.HTTPError as e:
            status, ctype, raw = e.code, e.headers.get("Content-Type", ""), e.read()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


def main():
    global UPSTREAM
    cert, key = sys.argv[1], sys.argv[2]
    UPSTREAM = sys.argv[3].rstrip("/") if len(sys.argv) > 3 else None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
