"""A webhook receiver for the outbox tests (t/81): records every request
and answers as a control file says.

    webhook_receiver.py PORT DIR [CERT KEY]

With CERT and KEY it answers over HTTPS (t/85).

Every request is appended to DIR/requests.jsonl as one JSON line (time,
path, headers, body) as soon as its body is read, before the answer.
DIR/mode (read per request) says the answer:
    ok              200 with {"id":"msg-<n>"} (n counts the requests)
    status N [S]    HTTP N, with Retry-After: S if given
    sleep S         wait S seconds, then 200
    close           close the connection without an answer
"""

import json
import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
DIR = sys.argv[2]
LOCK = threading.Lock()
COUNT = [0]


def mode():
    try:
        with open(os.path.join(DIR, "mode")) as f:
            return f.read().split()
    except OSError:
        return ["ok"]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        rec = {
            "time": time.time(),
            "path": self.path,
            "headers": {k: v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
        }
        with LOCK:
            COUNT[0] += 1
            n = COUNT[0]
            with open(os.path.join(DIR, "requests.jsonl"), "a") as f:
                f.write(json.dumps(rec) + "\n")
        m = mode()
        if m[0] == "close":
            self.close_connection = True
            return
        if m[0] == "sleep":
            time.sleep(float(m[1]))
            m = ["ok"]
        status = 200 if m[0] == "ok" else int(m[1])
        self.send_response(status)
        if m[0] == "status" and len(m) > 2:
            self.send_header("Retry-After", m[2])
        reply = json.dumps({"id": "msg-%d" % n}).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


ThreadingHTTPServer.daemon_threads = True
srv = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
if len(sys.argv) > 4:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("listening", flush=True)
srv.serve_forever()
