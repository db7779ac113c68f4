#!/usr/bin/python3
"""A fast webhook receiver and SMS gateway for the benchmark's outbox
section (python3 stdlib only).

Every POST is answered 200 with {"id":"m<n>"} after a fixed delay that
the control port can change (0: at once). Plain HTTP/1.1 keep-alive on
loopback, asyncio: a request in flight costs a coroutine, not a thread.
Nothing is stored: the body (an SMS holds a card code) is read and
dropped.

    bench/receiver.py --ready-file F [--delay-ms 0]

The ready file gets {"port": N, "control_port": M}. Control (plain
HTTP): GET /stats -> {"requests", "inflight", "max_inflight", "first",
"last"} (times of the first and last answer since the reset), POST
/delay/{ms}, POST /reset (counters).
"""

import argparse
import asyncio
import json
import os
import re
import sys
import time


class State:
    delay = 0.0
    requests = 0
    inflight = 0
    max_inflight = 0
    first = None
    last = None


async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b'\r\n\r\n')
            m = re.search(rb'(?i)\r\ncontent-length:\s*(\d+)', head)
            if m:
                await reader.readexactly(int(m.group(1)))
            State.inflight += 1
            State.max_inflight = max(State.max_inflight, State.inflight)
            try:
                if State.delay > 0:
                    await asyncio.sleep(State.delay)
                State.requests += 1
                body = b'{"id":"m%d"}' % State.requests
                writer.write(b'HTTP/1.1 200 OK\r\n'
                             b'Content-Type: application/json\r\n'
                             b'Content-Length: %d\r\n\r\n' % len(body)
                             + body)
                await writer.drain()
                now = time.time()
                State.first = State.first or now
                State.last = now
            finally:
                State.inflight -= 1
    except (asyncio.IncompleteReadError, ConnectionError,
            asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def control(reader, writer):
    try:
        head = await reader.readuntil(b'\r\n\r\n')
        method, path = head.split(b'\r\n', 1)[0].decode().split(' ')[:2]
        m = re.match(r'^/delay/(\d+)$', path)
        if method == 'POST' and m:
            State.delay = int(m.group(1)) / 1000.0
        elif method == 'POST' and path == '/reset':
            State.requests = 0
            State.max_inflight = State.inflight
            State.first = State.last = None
        body = json.dumps({'requests': State.requests,
                           'inflight': State.inflight,
                           'max_inflight': State.max_inflight,
                           'delay_ms': int(State.delay * 1000),
                           'first': State.first, 'last': State.last,
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
    srv = await asyncio.start_server(serve, '127.0.0.1', 0, backlog=4096)
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
    p.add_argument('--delay-ms', type=int, default=0)
    p.add_argument('--ready-file', required=True)
    try:
        asyncio.run(main(p.parse_args()))
    except KeyboardInterrupt:
        sys.exit(0)
