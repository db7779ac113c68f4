"""A tiny DNS server for tests (standard library only, UDP).

    dns_server.py PORT MODE_FILE [LOG_FILE]

Answers every A query with the address written in MODE_FILE (read again
for every query), TTL 1; "fail" there (or anything that is not an
address) makes it answer SERVFAIL, "drop" makes it not answer. AAAA and other types get an empty answer. With
LOG_FILE, each query is appended as "TYPE NAME ANSWER".
"""

import socket
import struct
import sys


def qname(data, off):
    labels = []
    while True:
        n = data[off]
        off += 1
        if n == 0:
            break
        labels.append(data[off:off + n].decode("ascii", "replace"))
        off += n
    return ".".join(labels), off


def main():
    port, mode_file = int(sys.argv[1]), sys.argv[2]
    log = sys.argv[3] if len(sys.argv) > 3 else None
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    while True:
        data, peer = s.recvfrom(2048)
        if len(data) < 12:
            continue
        qid, flags, qd = struct.unpack("!HHH", data[:6])
        try:
            name, off = qname(data, 12)
            qtype, qclass = struct.unpack("!HH", data[off:off + 4])
        except (IndexError, struct.error):
            continue
        question = data[12:off + 4]
        try:
            with open(mode_file) as f:
                mode = f.read().strip()
        except OSError:
            mode = "fail"
        if log:
            with open(log, "a") as f:
                f.write("%d %s %s\n" % (qtype, name, mode))
        if mode == "drop":
            continue
        rd = flags & 0x0100
        if mode != "fail" and qtype == 1:
            try:
                addr = socket.inet_aton(mode)
            except OSError:
                mode = "fail"
        if mode == "fail":
            hdr = struct.pack("!HHHHHH", qid, 0x8080 | rd | 2, 1, 0, 0, 0)
            s.sendto(hdr + question, peer)
            continue
        answers = b""
        count = 0
        if qtype == 1:
            answers = (struct.pack("!HHHIH", 0xC00C, 1, 1, 1, 4) + addr)
            count = 1
        hdr = struct.pack("!HHHHHH", qid, 0x8480 | rd, 1, count, 0, 0)
        s.sendto(hdr + question + answers, peer)


main()
