"""An SMTP server for the outbox tests (t/83): STARTTLS and AUTH
required, every message stored decoded as one JSON line.

    smtp_server.py PORT DIR CERT KEY USER PASSWORD

DIR/messages.jsonl gets, per message accepted: the envelope, the auth
user, whether TLS was on, the raw message, its headers (decoded), the
MIME structure and the text and HTML parts decoded. DIR/mode (read per
command) makes one step answer an error: "rcpt 450", "rcpt 550",
"data 451", "data 554", "mail 451".
"""

import asyncio
import email
import email.header
import email.policy
import json
import os
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

PORT, DIR, CERT, KEY, USER, PASSWORD = sys.argv[1:7]


def mode():
    try:
        with open(os.path.join(DIR, "mode")) as f:
            return f.read().split()
    except OSError:
        return []


def fault(step):
    m = mode()
    if len(m) >= 2 and m[0] == step:
        return "%s Fault injected at %s" % (m[1], step.upper())
    return None


def authenticator(server, session, envelope, mechanism, auth_data):
    if (isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == USER
            and auth_data.password.decode() == PASSWORD):
        return AuthResult(success=True, auth_data=USER)
    return AuthResult(success=False, handled=False)


class Handler:
    async def handle_MAIL(self, server, session, envelope, address, options):
        f = fault("mail")
        if f:
            return f
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, options):
        f = fault("rcpt")
        if f:
            return f
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        f = fault("data")
        if f:
            return f
        raw = envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        parts = []
        for p in msg.walk():
            parts.append({
                "type": p.get_content_type(),
                "charset": p.get_content_charset(),
                "cte": p.get("Content-Transfer-Encoding"),
                "content": (p.get_content()
                            if not p.is_multipart() else None),
            })
        rec = {
            "mail_from": envelope.mail_from,
            "rcpt": envelope.rcpt_tos,
            "auth": session.authenticated and USER,
            "tls": session.ssl is not None,
            "raw": raw.decode("ascii", "replace"),
            "headers": {k: str(v) for k, v in msg.items()},
            "parts": parts,
        }
        with open(os.path.join(DIR, "messages.jsonl"), "a") as f:
            f.write(json.dumps(rec) + "\n")
        return "250 Message accepted"


ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(CERT, KEY)
c = Controller(Handler(), hostname="127.0.0.1", port=int(PORT),
               tls_context=ctx, require_starttls=True, auth_required=True,
               auth_require_tls=True, authenticator=authenticator,
               server_hostname="localhost")
c.start()
print("listening", flush=True)
try:
    asyncio.get_event_loop().run_forever()
except KeyboardInterrupt:
    pass
