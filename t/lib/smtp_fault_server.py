"""A scriptable SMTP server for the delivery fault tests (t/85): python's
standard library only, one thread per connection, STARTTLS (the test
CA's server certificate) and AUTH PLAIN required before MAIL.

    smtp_fault_server.py PORT DIR CERT KEY USER PASSWORD

DIR/mode, read at every step, holds the faults to inject, as words:
    greet N       the greeting is "N ..." (and the connection closed)
    ehlo N        EHLO (before TLS) answers N;  ehlo2 N: EHLO after TLS
    helo N        HELO answers N (the fallback when EHLO is not known)
    nostarttls    STARTTLS not offered, and refused if tried anyway;
                  AUTH and MAIL are then accepted in clear
    starttls N    STARTTLS answers N
    auth N        AUTH answers N (after the credentials)
    mail N        MAIL answers N;  rcpt N: RCPT;  data N: the DATA command
    eod N         the end of the data (after the body) answers N
    stall B       after B bytes of the body: silent until the client
                  closes (no reply, nothing more read)
    keep          keep the connection after a message (by default it is
                  closed after the 250: a client reusing its
                  connection would never meet a greeting, EHLO,
                  STARTTLS or AUTH fault)
Nothing in the file: every step succeeds.

Written to DIR:
    commands.jsonl   every command: connection number, tls, the verb
                     (AUTH's data is not written)
    messages.jsonl   every message accepted: envelope, tls, auth, raw,
                     the Message-ID
    stalled.jsonl    every stalled body: the bytes read and its
                     Message-ID if they hold it
"""

import base64
import email
import email.policy
import json
import os
import select
import socket
import ssl
import sys
import threading
import time

PORT, DIR, CERT, KEY, USER, PASSWORD = sys.argv[1:7]
LOCK = threading.Lock()
COUNT = [0]

CTX = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
CTX.load_cert_chain(CERT, KEY)


def mode():
    try:
        with open(os.path.join(DIR, "mode")) as f:
            w = f.read().split()
    except OSError:
        return {}
    m, i = {}, 0
    while i < len(w):
        if w[i] in ("nostarttls", "keep"):
            m[w[i]] = True
            i += 1
        else:
            m[w[i]] = w[i + 1] if i + 1 < len(w) else ""
            i += 2
    return m


def record(name, rec):
    with LOCK:
        with open(os.path.join(DIR, name), "a") as f:
            f.write(json.dumps(rec) + "\n")


def message_id(raw):
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    return msg.get("Message-ID")


class Session:
    def __init__(self, sock, n):
        self.sock = sock
        self.n = n
        self.buf = b""
        self.tls = False
        self.auth = None
        self.mail_from = None
        self.rcpt = []

    def send(self, line):
        self.sock.sendall(line.encode() + b"\r\n")

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                return None
            self.buf += d
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def log(self, verb):
        record("commands.jsonl", {"conn": self.n, "tls": self.tls,
                                  "verb": verb, "time": time.time()})

    def silent(self):
        # nothing more read or answered until the client goes away
        p = select.poll()
        p.register(self.sock.fileno(), select.POLLRDHUP | select.POLLHUP
                   | select.POLLERR)
        p.poll(120000)

    def fault(self, step):
        return mode().get(step)

    def run(self):
        f = self.fault("greet")
        if f:
            self.send("%s mx.test service not available" % f)
            return
        self.send("220 mx.test ESMTP ready")
        while True:
            ln = self.line()
            if ln is None:
                return
            words = ln.decode("utf-8", "replace").split(" ", 1)
            verb = words[0].upper()
            arg = words[1] if len(words) > 1 else ""
            self.log(verb)
            h = getattr(self, "do_" + verb, None)
            if h is None:
                self.send("502 5.5.2 command not recognized")
                continue
            if h(arg) is False:
                return

    def do_EHLO(self, arg):
        f = self.fault("ehlo2" if self.tls else "ehlo")
        if f:
            self.send("%s EHLO refused" % f)
            return
        ext = ["mx.test", "SIZE 10000000", "8BITMIME"]
        m = mode()
        if not self.tls and "nostarttls" not in m:
            ext.append("STARTTLS")
        if self.tls or "nostarttls" in m:
            ext.append("AUTH PLAIN")
        for e in ext[:-1]:
            self.send("250-" + e)
        self.send("250 " + ext[-1])

    def do_HELO(self, arg):
        f = self.fault("helo")
        self.send("%s HELO refused" % f if f else "250 mx.test")

    def do_STARTTLS(self, arg):
        if self.tls or "nostarttls" in mode():
            self.send("502 5.5.1 STARTTLS not offered")
            return
        f = self.fault("starttls")
        if f:
            self.send("%s TLS not available now" % f)
            return
        self.send("220 2.0.0 ready to start TLS")
        self.sock = CTX.wrap_socket(self.sock, server_side=True)
        self.tls = True
        self.buf = b""
        self.auth = None

    def do_AUTH(self, arg):
        a = arg.split(" ", 1)
        if a[0].upper() != "PLAIN":
            self.send("504 5.5.4 mechanism not supported")
            return
        if len(a) > 1:
            data = a[1]
        else:
            self.send("334 ")
            data = (self.line() or b"").decode("ascii", "replace")
        f = self.fault("auth")
        if f:
            self.send("%s authentication unavailable" % f)
            return
        try:
            _, user, pw = base64.b64decode(data).decode().split("\0")
        except Exception:
            user, pw = None, None
        if user == USER and pw == PASSWORD:
            self.auth = user
            self.send("235 2.7.0 authenticated")
        else:
            self.send("535 5.7.8 authentication failed")

    def do_MAIL(self, arg):
        if not self.auth:
            self.send("530 5.7.0 authentication required")
            return
        f = self.fault("mail")
        if f:
            self.send("%s MAIL refused" % f)
            return
        self.mail_from = arg.split(":", 1)[-1].strip().split(" ")[0].strip("<>")
        self.rcpt = []
        self.send("250 2.1.0 OK")

    def do_RCPT(self, arg):
        if self.mail_from is None:
            self.send("503 5.5.1 MAIL first")
            return
        f = self.fault("rcpt")
        if f:
            self.send("%s RCPT refused" % f)
            return
        self.rcpt.append(arg.split(":", 1)[-1].strip().strip("<>"))
        self.send("250 2.1.5 OK")

    def do_DATA(self, arg):
        if not self.rcpt:
            self.send("503 5.5.1 RCPT first")
            return
        f = self.fault("data")
        if f:
            self.send("%s DATA refused" % f)
            return
        self.send("354 end with <CRLF>.<CRLF>")
        stall = self.fault("stall")
        lines = []
        size = 0
        while True:
            ln = self.line()
            if ln is None:
                return False
            if ln == b".":
                break
            if ln.startswith(b"."):
                ln = ln[1:]
            lines.append(ln)
            size += len(ln) + 2
            if stall is not None and size >= int(stall):
                raw = b"\r\n".join(lines) + b"\r\n"
                record("stalled.jsonl", {"conn": self.n, "bytes": len(raw),
                                         "message_id": message_id(raw),
                                         "time": time.time()})
                self.silent()
                return False
        raw = b"\r\n".join(lines) + b"\r\n"
        f = self.fault("eod")
        if f:
            self.send("%s message not accepted" % f)
            self.mail_from, self.rcpt = None, []
            return
        record("messages.jsonl", {
            "conn": self.n, "tls": self.tls, "auth": self.auth,
            "mail_from": self.mail_from, "rcpt": self.rcpt,
            "message_id": message_id(raw),
            "raw": raw.decode("utf-8", "replace"), "time": time.time()})
        self.mail_from, self.rcpt = None, []
        self.send("250 2.0.0 accepted")
        if "keep" not in mode():
            return False

    def do_RSET(self, arg):
        self.mail_from, self.rcpt = None, []
        self.send("250 2.0.0 OK")

    def do_NOOP(self, arg):
        self.send("250 2.0.0 OK")

    def do_QUIT(self, arg):
        self.send("221 2.0.0 bye")
        return False


def serve(sock):
    with LOCK:
        COUNT[0] += 1
        n = COUNT[0]
    s = Session(sock, n)
    try:
        s.run()
    except (OSError, ssl.SSLError, ValueError):
        pass
    finally:
        try:
            s.sock.close()
        except OSError:
            pass


srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(PORT)))
srv.listen(64)
print("listening", flush=True)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
