#!/usr/bin/python3
"""A fast, dumb OneClickDz mock for the benchmark (python3 stdlib only).

Every GET /v3/internet/check-id/{id} is answered FULFILLED for that id,
with a fresh 16-digit card code, after a fixed delay that the control
port can change. HTTPS, HTTP/1.1 keep-alive, asyncio: thousands of slow
requests in flight cost a coroutine each, not a thread (the test mock in
t/lib is threaded and does far more per request).

    bench/mock.py --cert C --key K --ready-file F [--delay-ms 100]

The ready file gets {"port": N, "control_port": M}. Control (plain
HTTP, loopback): GET /stats -> {"requests", "inflight", "max_inflight"},
POST /delay/{ms}, POST /reset (counters).
"""

import argparse
import asyncio
import json
import os
import re
import secrets
import ssl
import sys
import time

CHECK_RE = re.compile(rb'^GET /v3/internet/check-id/([0-9a-fA-F]{24}) ')


class State:
    delay = 0.1
    requests = 0
    inflight = 0
    max_inflight = 0


def reply(oid):
    card = str(secrets.randbelow(9 * 10 ** 15) + 10 ** 15)
    body = json.dumps({
        'success': True,
        'data': {
            '_id': oid, 'status': 'FULFILLED', 'type': 'ADSL',
            'number': '036362608', 'topup_amount': 1000,
            'card_code': card, 'num_trans': 'AT-BENCH-' + oid[:8],
            'date_traitement': '2026-01-01T00:00:00.000Z',
            'created_at': '2026-01-01T00:00:00.000Z'},
    }, separators=(',', ':')).encode()
    return (b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n'
            b'Content-Length: %d\r\n\r\n' % len(body)) + body


NOT_FOUND = (b'HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n'
             b'Content-Length: 52\r\n\r\n'
             b'{"message":"Not Found","error":"x","statusCode":404}')


async def api(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b'\r\n\r\n')
            m = CHECK_RE.match(head)
            State.requests += 1
            State.inflight += 1
            State.max_inflight = max(State.max_inflight, State.inflight)
            try:
                if State.delay > 0:
                    await asyncio.sleep(State.delay)
                writer.write(reply(m.group(1).decode().lower())
                             if m else NOT_FOUND)
                await writer.drain()
            finally:
                State.inflight -= 1
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError,
            asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def control(reader, writer):
    try:
        head = await reader.readuntil(b'\r\n\r\n')
        line = head.split(b'\r\n', 1)[0].decode()
        method, path = line.split(' ')[:2]
        m = re.match(r'^/delay/(\d+)$', path)
        if method == 'POST' and m:
            State.delay = int(m.group(1)) / 1000.0
        elif method == 'POST' and path == '/reset':
            State.requests = 0
            State.max_inflight = State.inflight
        body = json.dumps({'requests': State.requests,
                           'inflight': State.inflight,
                           'max_inflight': State.max_inflight,
                           'delay_ms': int(State.delay * 1000),
                           'time': time.time()}).encode()
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n'
                     b'Connection: close\r\nContent-Length: %d\r\n\r\n'
                     % len(body) + body)
        await writer.drain()
    except Exception:
        pass
    finally:
        writer.close()


async def main(a):
    State.delay = a.delay_ms / 1000.0
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(a.cert, a.key)
    srv = await asyncio.start_server(api, '127.0.0.1', a.port, ssl=ctx,
                                     backlog=4096)
    ctl = await asyncio.start_server(control, '127.0.0.1', 0)
    info = {'port': srv.sockets[0].getsockname()[1],
            'control_port': ctl.sockets[0].getsockname()[1],
            'pid': os.getpid()}
    tmp = a.ready_file + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(info, f)
    os.rename(tmp, a.ready_file)
    await asyncio.gather(srv.serve_forever(), ctl.serve_forever())


if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--cert', required=True)
    p.add_argument('--key', required=True)
    p.add_argument('--port', type=int, default=0)
    p.add_argument('--delay-ms', type=int, default=100)
    p.add_argument('--ready-file', required=True)
    try:
        asyncio.run(main(p.parse_args()))
    except KeyboardInterrupt:
        sys.exit(0)
