"""A TCP forwarder for tests (standard library only).

    tcp_forward.py LISTEN_ADDR PORT TARGET_FILE [LOG_FILE]

Listens on LISTEN_ADDR:PORT; each connection goes to 127.0.0.1 at the
port written in TARGET_FILE, read again for every connection (a test
changes what answers at an address). With LOG_FILE, a line
"LISTEN_ADDR" is appended for every connection accepted.
"""

import socket
import sys
import threading


def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def serve(c, target, log, addr):
    if log:
        with open(log, "a") as f:
            f.write(addr + "\n")
    try:
        with open(target) as f:
            port = int(f.read().strip())
        u = socket.create_connection(("127.0.0.1", port))
    except (OSError, ValueError):
        c.close()
        return
    threading.Thread(target=pipe, args=(c, u), daemon=True).start()
    pipe(u, c)
    c.close()
    u.close()


def main():
    addr, port, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    log = sys.argv[4] if len(sys.argv) > 4 else None
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c, target, log, addr),
                         daemon=True).start()


main()
