#!/usr/bin/python3
#
# The messages ocdz_mail builds, read by an independent parser: Python's
# email package decodes the headers (RFC 2047), the MIME structure and
# the transfer encodings, and each part must equal what the template
# renders to (printed by the unit binary: build/unit/mail_test --part).
# Plain and hostile field values, in en, fr and ar. Emits TAP.
#
# The unit binary's directory comes from OCDZ_UNIT (make test-unit sets
# it), else ../../build/unit from here.

import datetime
import email
import email.policy
import email.utils
import os
import subprocess
import sys

unit = os.environ.get("OCDZ_UNIT") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "unit")
driver = os.path.join(unit, "mail_test")

run = 0
failed = 0


def ok(cond, name, diag=None):
    global run, failed
    run += 1
    if cond:
        print("ok %d - %s" % (run, name))
    else:
        failed += 1
        print("not ok %d - %s" % (run, name))
        if diag is not None:
            for line in str(diag).splitlines():
                print("#   " + line)


def drive(*args):
    return subprocess.run([driver] + list(args), check=True,
                          stdout=subprocess.PIPE).stdout


def crlf_to_lf(s):
    return s.replace("\r\n", "\n")


def all_defects(msg):
    found = list(msg.defects)
    for name, value in msg.items():
        found += list(getattr(value, "defects", []))
    for part in msg.walk():
        if part is not msg:
            found += list(part.defects)
    return found


if not os.access(driver, os.X_OK):
    print("1..0 # SKIP %s not built" % driver)
    sys.exit(0)

sent = datetime.datetime(2025, 10, 29, 1, 6, 40,
                         tzinfo=datetime.timezone.utc)

for lang in ("en", "fr", "ar"):
    for variant in ([], ["hostile"]):
        what = lang + (" hostile" if variant else "")
        raw = drive("--emit", lang, *variant)
        want = {k: drive("--part", lang, k, *variant).decode("utf-8")
                for k in ("subject", "text", "html")}

        msg = email.message_from_bytes(raw, policy=email.policy.default)

        defects = all_defects(msg)
        ok(not defects, "%s: no defect found by Python" % what, defects)

        ok(raw.endswith(b"\r\n") and raw.count(b"\n") == raw.count(b"\r\n")
           and raw.count(b"\r") == raw.count(b"\r\n"),
           "%s: every line ends in CRLF, no bare CR or LF" % what)
        ok(max(len(line) for line in raw.split(b"\r\n")) <= 78,
           "%s: no line over 78 characters" % what)

        ok(str(msg["subject"]) == want["subject"],
           "%s: subject decodes to the rendered subject" % what,
           "got %r\nwant %r" % (str(msg["subject"]), want["subject"]))

        frm = msg["from"].addresses
        ok(len(frm) == 1
           and frm[0].display_name == "Boutique \u00c9l\u00e9phant"
           and frm[0].addr_spec == "noreply@shop.example",
           "%s: From display name and address" % what, frm)
        to = msg["to"].addresses
        ok(len(to) == 1 and to[0].addr_spec == "client@example.com",
           "%s: one recipient" % what, to)
        ok(msg["bcc"] is None and msg["x-evil"] is None
           and msg["cc"] is None,
           "%s: no injected header" % what)
        ok(str(msg["message-id"])
           == "<ocdz.690161a3e9e88196b4eb6545.email@shop.example>",
           "%s: Message-ID" % what)
        ok(email.utils.parsedate_to_datetime(str(msg["date"])) == sent,
           "%s: Date" % what)
        ok(str(msg["mime-version"]) == "1.0", "%s: MIME-Version" % what)

        ok(msg.get_content_type() == "multipart/alternative",
           "%s: multipart/alternative" % what)
        parts = list(msg.iter_parts())
        ok(len(parts) == 2
           and [p.get_content_type() for p in parts]
           == ["text/plain", "text/html"]
           and all(p.get_content_charset() == "utf-8" for p in parts),
           "%s: text/plain then text/html, UTF-8" % what,
           [p.get_content_type() for p in parts])
        if len(parts) != 2:
            continue

        ok(all(p["content-transfer-encoding"] in ("quoted-printable",
                                                  "base64") for p in parts),
           "%s: quoted-printable or base64" % what)

        text = crlf_to_lf(parts[0].get_content())
        html = crlf_to_lf(parts[1].get_content())
        ok(text == want["text"], "%s: text part decodes to the exact text"
           % what, "got %r\nwant %r" % (text[:300], want["text"][:300]))
        ok(html == want["html"], "%s: HTML part decodes to the exact HTML"
           % what, "got %r\nwant %r" % (html[:300], want["html"][:300]))

        if lang == "ar":
            ok('<html lang="ar" dir="rtl">' in html,
               "%s: the HTML part is right to left" % what)

        if variant:
            ok("<script>" not in html and "&lt;script&gt;" in html,
               "%s: a hostile field is escaped in the HTML" % what)
            card = "12=34 .5 \u00e9=?x?="
            ok(card in text and card in html,
               "%s: the card code comes out exactly" % what)
        else:
            ok("123456789012" in text and "123456789012" in html,
               "%s: the card code in both parts" % what)

print("1..%d" % run)
sys.exit(min(failed, 255))
