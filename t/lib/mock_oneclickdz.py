#!/usr/bin/python3
"""Mock of the OneClickDz API v3 (the parts ngx_http_ocdz_module uses).

Python 3 standard library only. HTTPS (HTTP/1.1, keep-alive) on a
loopback port, plus a plain-HTTP control port that tests use to set
orders, inject faults and read what the mock saw.

Standalone (demo):

    python3 t/lib/mock_oneclickdz.py --port 8443 --cert srv.crt \\
        --key srv.key --token SECRET --auto-fulfil 5

API routes (all need X-Access-Token unless noted):

    GET /v3/ping                         {"data":{"api":"ok"}}
    GET /v3/internet/check-id/{id}       the order, 404 NOT_FOUND if unknown
    GET /v3/internet/check-ref/{ref}     same, by ref
    anything else                        framework 404, no envelope

Card fields (card_code, num_trans, date_traitement) are only present
when the status is FULFILLED; refund_message only when set.

Control routes (plain HTTP on --control-port, JSON in and out):

    POST   /order        {"id":..., "status":..., fields...,
                          "fulfil_after": SECONDS,
                          "fulfil_after_checks": N,
                          "then": "FULFILLED"}   create or replace
    GET    /order/{id}   the stored order (incl. card_code), 404 if none
    DELETE /order/{id}   forget it (the API answers 404 NOT_FOUND)
    POST   /fault        {"kind":..., "id": optional, "count": optional,
                          "delay_ms": optional, params...} -> {"fault": n}
    POST   /faults/reset drop every fault
    POST   /release      let every "hang" request go (closes them)
    POST   /reset        orders, faults, request log, counters
    POST   /requests/reset   request log and counters only
    GET    /requests     every request seen (all listeners)
    GET    /stats        per id: count, inflight, max_inflight; totals
    POST   /tokens       {"tokens": [primary, secondary...]}
    POST   /config       {"auto_fulfil": SECONDS or null}
    GET    /health       {"ok":true}

Fault kinds (per id when "id" is given, else global; "count": apply to
that many requests then vanish; "delay_ms" works with every kind):

    delay            wait delay_ms (or "ms"), then answer normally
    status           HTTP "code" with an error envelope ("error_code",
                     "message", "envelope": false for an empty body,
                     "retry_after", "headers")
    auth             401 (or "code": 403) with an envelope
                     ("error_code" default INVALID_ACCESS_TOKEN/FORBIDDEN)
    not_found        404 NOT_FOUND envelope
    notfound_bare    404 framework body, no envelope
    rate_limit       429 RATE_LIMIT_EXCEEDED, Retry-After: "retry_after"
    redirect         "code" (302) to "location"
    malformed        "variant": truncated (default) | not_json | empty |
                     array | wrong_types | html
    oversized        valid JSON of "size" bytes (default 10 MB),
                     "chunked": true for chunked transfer encoding
    duplicate_keys   "field" (default status) appears twice, the second
                     FULFILLED/with a card
    nul              "\\u0000" inside "field" (default card_code)
    wrong_id         the order with another _id ("other_id" or random)
    fulfilled_no_card  status FULFILLED without card_code
    raw              "code", "headers" {..}, "body" or "body_b64"
    close            close the connection without answering
    reset            send a TCP reset without answering
    hang             read the request, never answer (until the client
                     goes, POST /release, or "max_s" default 600)
    trickle          normal answer, "chunk" bytes (1) every
                     "interval_ms" (200)
    tls_reset        (connection level, global) reset during handshake
    tls_hang         (connection level, global) accept, never handshake
    tls_close        (connection level, global) close before handshake

Extra listeners (--extra NAME=CERT:KEY, or NAME=plain) serve the same
API with another certificate (a "rogue" self-signed one, a CA-signed one
for the wrong name); a listener named catcher* records requests and
answers a FULFILLED order, to prove a redirect was (not) followed.
"""

import argparse
import base64
import json
import os
import random
import re
import select
import signal
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ID_RE = re.compile(r'^[0-9a-f]{24}$')
STATE = None            # the shared State, set in main()
CONN_KINDS = ('tls_reset', 'tls_hang', 'tls_close')


def iso_now(offset=0.0):
    t = time.time() + offset
    return time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(t)) + \
        '.%03dZ' % int((t % 1) * 1000)


def rand_hex(n):
    return os.urandom(n).hex()


def rand_card():
    return ''.join(random.choice('0123456789') for _ in range(16))


class State:
    """Everything the threads share, behind one lock."""

    def __init__(self, tokens, auto_fulfil):
        self.lock = threading.Lock()
        self.tokens = list(tokens)
        self.auto_fulfil = auto_fulfil
        self.release = threading.Event()
        self.reset_all()

    def reset_all(self):
        self.orders = {}
        self.faults = []
        self.fault_seq = 0
        self.reset_requests()

    def reset_requests(self):
        self.requests = []
        self.per_id = {}
        self.inflight = 0
        self.max_inflight = 0
        self.conn_seq = 0

    # -- orders ---------------------------------------------------------

    def put_order(self, spec):
        oid = spec.get('id') or spec.get('_id')
        if not oid:
            raise ValueError('order needs an id')
        o = {
            '_id': oid,
            'ref': spec.get('ref', 'ref-' + oid[-8:]),
            'status': spec.get('status', 'HANDLING'),
            'type': spec.get('type', 'ADSL'),
            'number': spec.get('number', '036362608'),
            'topup_amount': spec.get('topup_amount', 1000),
            'created_at': spec.get('created_at', iso_now(-60)),
        }
        for k in ('card_code', 'num_trans', 'date_traitement',
                  'refund_message'):
            if k in spec:
                o[k] = spec[k]
        o['_then'] = spec.get('then', 'FULFILLED')
        if spec.get('fulfil_after') is not None:
            o['_at'] = time.time() + float(spec['fulfil_after'])
        if spec.get('fulfil_after_checks') is not None:
            o['_after_checks'] = int(spec['fulfil_after_checks'])
        o['_checks'] = 0
        if 'extra' in spec:            # extra fields, shown verbatim
            o['_extra'] = spec['extra']
        self.fill_card(o)
        self.orders[oid] = o
        return o

    @staticmethod
    def fill_card(o):
        if o['status'] == 'FULFILLED' or o.get('_at') or \
                o.get('_after_checks') is not None:
            o.setdefault('card_code', rand_card())
            o.setdefault('num_trans', 'AT-%d-%05d'
                         % (time.gmtime().tm_year, random.randrange(99999)))
        if o['status'] == 'FULFILLED':
            o.setdefault('date_traitement', iso_now())

    def advance(self, o, count_check):
        """Time- and check-driven transitions; called under the lock."""
        if count_check:
            o['_checks'] += 1
        due = False
        if o.get('_at') is not None and time.time() >= o['_at']:
            due = True
        n = o.get('_after_checks')
        if n is not None and o['_checks'] > n:
            due = True
        if due:
            o['status'] = o['_then']
            o.pop('_at', None)
            o.pop('_after_checks', None)
            if o['status'] == 'FULFILLED':
                o.setdefault('date_traitement', iso_now())

    def lookup(self, oid, by_ref=False):
        if by_ref:
            for o in self.orders.values():
                if o.get('ref') == oid:
                    return o
            return None
        o = self.orders.get(oid)
        if o is None and self.auto_fulfil is not None and ID_RE.match(oid):
            o = self.put_order({'id': oid, 'status': 'HANDLING',
                                'fulfil_after': self.auto_fulfil})
        return o

    # -- faults ---------------------------------------------------------

    def add_fault(self, spec):
        self.fault_seq += 1
        f = dict(spec)
        f['_n'] = self.fault_seq
        self.faults.append(f)
        return self.fault_seq

    def take_fault(self, oid, conn_level):
        """The first fault matching, per id before global; uses a count."""
        best = None
        for f in self.faults:
            if (f.get('kind') in CONN_KINDS) != conn_level:
                continue
            if f.get('id') is not None:
                if f['id'] != oid:
                    continue
                best = f
                break
            if best is None:
                best = f
        if best is None:
            return None
        if best.get('count') is not None:
            best['count'] = int(best['count']) - 1
            if best['count'] <= 0:
                self.faults.remove(best)
        return dict(best)


def public_order(o, drop_card=False):
    d = {k: v for k, v in o.items() if not k.startswith('_')}
    d['_id'] = o['_id']
    if o['status'] != 'FULFILLED' and not drop_card:
        for k in ('card_code', 'num_trans', 'date_traitement'):
            d.pop(k, None)
    if drop_card:
        d['status'] = 'FULFILLED'
        d.pop('card_code', None)
        d.setdefault('num_trans', 'AT-2025-00001')
        d.setdefault('date_traitement', iso_now())
    d.update(o.get('_extra', {}))
    return d


def envelope_ok(data):
    return {'success': True, 'data': data,
            'meta': {'timestamp': iso_now()},
            'requestId': 'req_' + rand_hex(8)}


def envelope_err(code, message):
    return {'success': False,
            'error': {'code': code, 'message': message, 'details': {}},
            'requestId': 'req_' + rand_hex(8)}


DEFAULT_CODES = {
    400: 'ERR_VALIDATION', 401: 'INVALID_ACCESS_TOKEN', 403: 'FORBIDDEN',
    404: 'NOT_FOUND', 409: 'CONFLICT', 429: 'RATE_LIMIT_EXCEEDED',
    500: 'INTERNAL_SERVER_ERROR', 502: 'BAD_GATEWAY',
    503: 'SERVICE_UNAVAILABLE', 504: 'GATEWAY_TIMEOUT',
}


class Quiet:
    def log_message(self, fmt, *args):
        if os.environ.get('MOCK_VERBOSE'):
            sys.stderr.write('mock: ' + (fmt % args) + '\n')


class ApiHandler(Quiet, BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'mock-oneclickdz'
    sys_version = ''
    timeout = 300               # idle keep-alive connections

    # one method for every verb: the framework 404s what it does not know
    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def setup(self):
        BaseHTTPRequestHandler.setup(self)
        with STATE.lock:
            STATE.conn_seq += 1
            self.conn_id = STATE.conn_seq

    # -- plumbing -------------------------------------------------------

    def read_body(self):
        n = int(self.headers.get('Content-Length') or 0)
        return self.rfile.read(n) if n > 0 else b''

    def send_json(self, code, obj, headers=None, raw=None):
        body = raw if raw is not None else \
            json.dumps(obj, ensure_ascii=False).encode('utf-8')
        self.send_response(code)
        self.send_header('Content-Type', 'application/json; charset=utf-8')
        self.send_header('Content-Length', str(len(body)))
        self.send_header('X-Request-Id', 'req_' + rand_hex(8))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)

    def framework_404(self):
        self.send_json(404, {'message': 'Cannot %s %s'
                             % (self.command, self.path.split('?')[0]),
                             'error': 'Not Found', 'statusCode': 404})

    def raw_socket(self):
        return self.connection

    # -- the request ----------------------------------------------------

    def dispatch(self):
        path = self.path.split('?', 1)[0]
        m = re.match(r'^/v3/internet/check-(id|ref)/([^/]*)$', path)
        oid = m.group(2) if m and m.group(1) == 'id' else None
        listener = self.server.name
        self.read_body()

        rec = {
            'method': self.command, 'path': self.path, 'id': oid,
            'headers': [[k, v] for k, v in self.headers.items()],
            'token': self.headers.get('X-Access-Token'),
            'time': time.time(), 'listener': listener,
            'conn': self.conn_id, 'client_port': self.client_address[1],
        }
        with STATE.lock:
            STATE.requests.append(rec)
            STATE.inflight += 1
            STATE.max_inflight = max(STATE.max_inflight, STATE.inflight)
            if oid is not None:
                s = STATE.per_id.setdefault(
                    oid, {'count': 0, 'inflight': 0, 'max_inflight': 0})
                s['count'] += 1
                s['inflight'] += 1
                s['max_inflight'] = max(s['max_inflight'], s['inflight'])
        try:
            self.answer(path, m, oid, listener)
        finally:
            with STATE.lock:
                STATE.inflight -= 1
                if oid is not None:
                    STATE.per_id[oid]['inflight'] -= 1

    def answer(self, path, m, oid, listener):
        if listener.startswith('catcher'):
            data = {'_id': oid or rand_hex(12), 'status': 'FULFILLED',
                    'type': 'ADSL', 'number': '036362608',
                    'topup_amount': 1000, 'card_code': '6666666666666666',
                    'num_trans': 'CATCHER', 'created_at': iso_now(),
                    'date_traitement': iso_now()}
            self.send_json(200, envelope_ok(data))
            return

        with STATE.lock:
            fault = STATE.take_fault(oid, False)
        if fault and fault.get('delay_ms'):
            time.sleep(float(fault['delay_ms']) / 1000.0)
        if fault and fault['kind'] == 'delay':
            time.sleep(float(fault.get('ms', 0)) / 1000.0)
            fault = None
        if fault and self.fault(fault, oid):
            return

        known = path == '/v3/ping' or m is not None
        if not known or self.command not in ('GET', 'HEAD'):
            self.framework_404()
            return

        token = self.headers.get('X-Access-Token')
        if token is None or token == '':
            self.send_json(401, envelope_err('MISSING_ACCESS_TOKEN',
                                             'Access token is required'))
            return
        with STATE.lock:
            ok = token in STATE.tokens
        if not ok:
            self.send_json(401, envelope_err('INVALID_ACCESS_TOKEN',
                                             'Invalid access token'))
            return

        if path == '/v3/ping':
            self.send_json(200, envelope_ok({'api': 'ok'}))
            return

        key = m.group(2)
        with STATE.lock:
            o = STATE.lookup(key, by_ref=(m.group(1) == 'ref'))
            if o is not None:
                STATE.advance(o, True)
                data = public_order(o)
        if o is None:
            self.send_json(404, envelope_err('NOT_FOUND', 'Topup not found'))
            return
        self.send_json(200, envelope_ok(data))

    # -- faults ---------------------------------------------------------

    def order_data(self, oid, fulfilled=False):
        with STATE.lock:
            o = STATE.orders.get(oid) if oid else None
            if o is None:
                o = {'_id': oid or rand_hex(12), 'ref': 'ref-x',
                     'status': 'FULFILLED' if fulfilled else 'HANDLING',
                     'type': 'ADSL', 'number': '036362608',
                     'topup_amount': 1000, 'created_at': iso_now(-60)}
                State.fill_card(o)
            else:
                STATE.advance(o, True)
                o = dict(o)
        return o

    def fault(self, f, oid):
        """Answers per the fault; False means go on normally."""
        kind = f['kind']
        hdrs = dict(f.get('headers') or {})

        if kind in ('status', 'auth', 'not_found', 'rate_limit'):
            code = int(f.get('code') or {'auth': 401, 'not_found': 404,
                                         'rate_limit': 429}.get(kind, 500))
            ecode = f.get('error_code') or DEFAULT_CODES.get(code, 'ERROR')
            if kind == 'rate_limit' or f.get('retry_after') is not None:
                hdrs.setdefault('Retry-After', str(f.get('retry_after', 1)))
            if f.get('envelope', True):
                self.send_json(code, envelope_err(
                    ecode, f.get('message', 'mock fault %d' % code)), hdrs)
            else:
                self.send_json(code, None, hdrs, raw=b'')
            return True

        if kind == 'notfound_bare':
            self.framework_404()
            return True

        if kind == 'redirect':
            hdrs['Location'] = f['location']
            self.send_json(int(f.get('code', 302)),
                           {'message': 'Found'}, hdrs)
            return True

        if kind == 'raw':
            body = base64.b64decode(f['body_b64']) if 'body_b64' in f \
                else f.get('body', '').encode('utf-8')
            self.send_response(int(f.get('code', 200)))
            if not any(k.lower() == 'content-type' for k in hdrs):
                self.send_header('Content-Type', 'application/json')
            if not any(k.lower() == 'content-length' for k in hdrs):
                self.send_header('Content-Length', str(len(body)))
            for k, v in hdrs.items():
                self.send_header(k, str(v))
            self.end_headers()
            self.wfile.write(body)
            return True

        if kind == 'malformed':
            v = f.get('variant', 'truncated')
            raw = {
                'truncated': b'{"success":true,"data":{"_id":"' +
                             (oid or '').encode() + b'","status":"FULF',
                'not_json': b'this is not json',
                'empty': b'',
                'array': b'[]',
                'html': b'<html><body>502 Bad Gateway</body></html>',
                'wrong_types': json.dumps(
                    {'success': 'yes', 'data': {'_id': 42, 'status': 7,
                                                'card_code': 123}}).encode(),
            }[v]
            self.send_json(200, None, hdrs, raw=raw)
            return True

        if kind == 'oversized':
            self.oversized(oid, int(f.get('size', 10 * 1024 * 1024)),
                           bool(f.get('chunked')))
            return True

        if kind == 'duplicate_keys':
            o = self.order_data(oid, True)
            field = f.get('field', 'status')
            card = o.get('card_code') or rand_card()
            pairs = [('_id', o['_id']),
                     ('status', 'HANDLING' if field == 'status'
                      else 'FULFILLED'),
                     ('type', o['type']), ('number', o['number']),
                     ('topup_amount', o['topup_amount']),
                     ('card_code', card),
                     ('num_trans', o.get('num_trans') or 'AT-1'),
                     ('date_traitement', iso_now())]
            second = {'status': 'FULFILLED', 'card_code': rand_card(),
                      '_id': rand_hex(12)}.get(field, 'duplicate')
            pairs.append((field, second))
            data = '{' + ','.join('%s:%s' % (json.dumps(k), json.dumps(v))
                                  for k, v in pairs) + '}'
            raw = ('{"success":true,"data":%s}' % data).encode()
            self.send_json(200, None, hdrs, raw=raw)
            return True

        if kind == 'nul':
            o = self.order_data(oid, True)
            d = public_order(dict(o, status='FULFILLED'))
            field = f.get('field', 'card_code')
            d[field] = '1234\x00' + str(d.get(field, 'x'))
            self.send_json(200, envelope_ok(d), hdrs)
            return True

        if kind == 'wrong_id':
            o = self.order_data(oid, True)
            d = public_order(o)
            d['_id'] = f.get('other_id') or rand_hex(12)
            self.send_json(200, envelope_ok(d), hdrs)
            return True

        if kind == 'fulfilled_no_card':
            o = self.order_data(oid, True)
            self.send_json(200, envelope_ok(public_order(o, drop_card=True)),
                           hdrs)
            return True

        if kind == 'close':
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return True

        if kind == 'reset':
            self.close_connection = True
            rst(self.connection)
            return True

        if kind == 'hang':
            self.close_connection = True
            deadline = time.time() + float(f.get('max_s', 600))
            sock = self.connection
            while time.time() < deadline and not STATE.release.is_set():
                try:
                    r, _, _ = select.select([sock], [], [], 0.2)
                    if r and sock.recv(1) == b'':
                        break
                except (OSError, ValueError, ssl.SSLError):
                    break
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return True

        if kind == 'trickle':
            self.trickle(oid, int(f.get('chunk', 1)),
                         float(f.get('interval_ms', 200)) / 1000.0)
            return True

        self.send_json(500, envelope_err('MOCK_BAD_FAULT', kind))
        return True

    def oversized(self, oid, size, chunked):
        head = ('{"success":true,"data":{"_id":"%s","status":"HANDLING",'
                '"pad":"' % (oid or '')).encode()
        tail = b'"}}'
        pad = max(0, size - len(head) - len(tail))
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        if chunked:
            self.send_header('Transfer-Encoding', 'chunked')
        else:
            self.send_header('Content-Length', str(len(head) + pad + len(tail)))
        self.end_headers()
        block = b'x' * 65536
        self.close_connection = True

        def out(b):
            if chunked:
                self.wfile.write(b'%x\r\n' % len(b) + b + b'\r\n')
            else:
                self.wfile.write(b)
        try:
            out(head)
            while pad > 0:
                n = min(pad, len(block))
                out(block[:n])
                pad -= n
            out(tail)
            if chunked:
                self.wfile.write(b'0\r\n\r\n')
        except (OSError, ssl.SSLError):
            pass

    def trickle(self, oid, chunk, interval):
        with STATE.lock:
            o = STATE.lookup(oid) if oid else None
            if o is not None:
                STATE.advance(o, True)
                data = public_order(o)
        if o is None:
            code, obj = 404, envelope_err('NOT_FOUND', 'Topup not found')
        else:
            code, obj = 200, envelope_ok(data)
        body = json.dumps(obj).encode()
        msg = ('HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n'
               'Content-Length: %d\r\n\r\n'
               % (code, 'OK' if code == 200 else 'Not Found',
                  len(body))).encode() + body
        try:
            for i in range(0, len(msg), chunk):
                self.wfile.write(msg[i:i + chunk])
                self.wfile.flush()
                time.sleep(interval)
        except (OSError, ssl.SSLError):
            self.close_connection = True


def rst(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack('ii', 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, name, ctx):
        self.name = name
        self.ctx = ctx
        ThreadingHTTPServer.__init__(self, addr, ApiHandler)

    def finish_request(self, request, client_address):
        # TLS in the connection's own thread: a slow or broken handshake
        # never holds up the accept loop
        if self.ctx is not None:
            with STATE.lock:
                f = STATE.take_fault(None, True) \
                    if self.name == 'main' else None
            if f:
                self.conn_fault(request, f)
                return
            request.settimeout(15)
            try:
                request = self.ctx.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):
                rst(request)
                return
            request.settimeout(None)
        try:
            self.RequestHandlerClass(request, client_address, self)
        except (OSError, ssl.SSLError):
            pass
        finally:
            if self.ctx is not None:
                try:
                    request.close()
                except OSError:
                    pass

    def conn_fault(self, sock, f):
        with STATE.lock:
            STATE.requests.append({'method': None, 'path': None, 'id': None,
                                   'headers': [], 'token': None,
                                   'time': time.time(), 'listener': self.name,
                                   'conn': None, 'conn_fault': f['kind'],
                                   'client_port': None})
        if f['kind'] == 'tls_close':
            sock.close()
        elif f['kind'] == 'tls_reset':
            sock.settimeout(5)
            try:
                sock.recv(5)            # part of the ClientHello
            except OSError:
                pass
            rst(sock)
        else:                            # tls_hang
            deadline = time.time() + float(f.get('max_s', 600))
            while time.time() < deadline and not STATE.release.is_set():
                r, _, _ = select.select([sock], [], [], 0.2)
                if r:
                    try:
                        if sock.recv(4096) == b'':
                            break
                    except OSError:
                        break
            sock.close()

    def handle_error(self, request, client_address):
        if os.environ.get('MOCK_VERBOSE'):
            ThreadingHTTPServer.handle_error(self, request, client_address)


class ControlHandler(Quiet, BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get('Content-Length') or 0)
        return json.loads(self.rfile.read(n) or b'{}') if n else {}

    def do_GET(self):
        p = self.path.split('?')[0]
        with STATE.lock:
            if p == '/health':
                return self.reply(200, {'ok': True})
            if p == '/requests':
                return self.reply(200, {'requests': STATE.requests})
            if p == '/stats':
                return self.reply(200, {
                    'per_id': STATE.per_id, 'total': len(STATE.requests),
                    'inflight': STATE.inflight,
                    'max_inflight': STATE.max_inflight,
                    'connections': STATE.conn_seq,
                    'faults': STATE.faults})
            m = re.match(r'^/order/(.+)$', p)
            if m:
                o = STATE.orders.get(m.group(1))
                if o is None:
                    return self.reply(404, {'error': 'no such order'})
                return self.reply(200, {k.lstrip('_') if k == '_id' else k: v
                                        for k, v in o.items()})
        self.reply(404, {'error': 'unknown control route'})

    def do_DELETE(self):
        m = re.match(r'^/order/(.+)$', self.path)
        if not m:
            return self.reply(404, {'error': 'unknown control route'})
        with STATE.lock:
            found = STATE.orders.pop(m.group(1), None) is not None
        self.reply(200, {'deleted': found})

    def do_POST(self):
        p = self.path.split('?')[0]
        try:
            b = self.body()
        except ValueError as e:
            return self.reply(400, {'error': 'bad json: %s' % e})
        try:
            with STATE.lock:
                if p == '/order':
                    o = STATE.put_order(b)
                    return self.reply(200, {'order': public_order(o)})
                if p == '/fault':
                    if 'kind' not in b:
                        return self.reply(400, {'error': 'fault needs kind'})
                    return self.reply(200, {'fault': STATE.add_fault(b)})
                if p == '/faults/reset':
                    STATE.faults = []
                    return self.reply(200, {'ok': True})
                if p == '/reset':
                    STATE.reset_all()
                    return self.reply(200, {'ok': True})
                if p == '/requests/reset':
                    STATE.reset_requests()
                    return self.reply(200, {'ok': True})
                if p == '/tokens':
                    STATE.tokens = list(b.get('tokens') or [])
                    return self.reply(200, {'ok': True})
                if p == '/config':
                    if 'auto_fulfil' in b:
                        STATE.auto_fulfil = b['auto_fulfil']
                    return self.reply(200, {'ok': True})
                if p == '/release':
                    STATE.release.set()
                    threading.Timer(1.0, STATE.release.clear).start()
                    return self.reply(200, {'ok': True})
        except (ValueError, TypeError, KeyError) as e:
            return self.reply(400, {'error': str(e)})
        self.reply(404, {'error': 'unknown control route'})


def tls_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def serve(server):
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    return t


def main():
    ap = argparse.ArgumentParser(
        description='Mock OneClickDz API v3 for ngx_http_ocdz_module tests.',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__)
    ap.add_argument('--host', default='127.0.0.1',
                    help='address to listen on (default 127.0.0.1)')
    ap.add_argument('--port', type=int, default=0,
                    help='HTTPS port of the API (0: pick a free one)')
    ap.add_argument('--cert', help='server certificate (PEM)')
    ap.add_argument('--key', help='server private key (PEM)')
    ap.add_argument('--plain', action='store_true',
                    help='serve the API over plain HTTP (no --cert/--key)')
    ap.add_argument('--token', action='append', default=[],
                    help='accepted X-Access-Token; repeat for a secondary')
    ap.add_argument('--token-file', action='append', default=[],
                    help='read an accepted token from a file')
    ap.add_argument('--control-port', type=int, default=0,
                    help='plain HTTP control port (0: pick; -1: none)')
    ap.add_argument('--extra', action='append', default=[],
                    metavar='NAME=CERT:KEY',
                    help='another HTTPS listener with its own certificate '
                         '(NAME=plain for plain HTTP); names starting '
                         'with "catcher" record requests and answer a '
                         'fulfilled order')
    ap.add_argument('--auto-fulfil', type=float, default=None,
                    metavar='SECONDS',
                    help='any unknown well-formed id (24 hex) exists as '
                         'HANDLING and turns FULFILLED with a random card '
                         'code after SECONDS')
    ap.add_argument('--ready-file',
                    help='write {"port":..,"control_port":..,"extra":{..}} '
                         'here once listening')
    a = ap.parse_args()

    tokens = list(a.token)
    for tf in a.token_file:
        with open(tf) as fh:
            tokens.append(fh.read().strip())
    if not tokens:
        ap.error('give at least one --token or --token-file')
    if not a.plain and not (a.cert and a.key):
        ap.error('--cert and --key are needed (or --plain)')

    global STATE
    STATE = State(tokens, a.auto_fulfil)

    main_srv = ApiServer((a.host, a.port), 'main',
                         None if a.plain else tls_context(a.cert, a.key))
    servers = [main_srv]
    extra = {}
    for spec in a.extra:
        name, _, files = spec.partition('=')
        if files == 'plain':
            ctx = None
        else:
            cert, _, key = files.partition(':')
            ctx = tls_context(cert, key)
        s = ApiServer((a.host, 0), name, ctx)
        servers.append(s)
        extra[name] = s.server_address[1]

    ctl_port = None
    if a.control_port >= 0:
        ctl = ThreadingHTTPServer((a.host, a.control_port), ControlHandler)
        ctl.daemon_threads = True
        servers.append(ctl)
        ctl_port = ctl.server_address[1]

    for s in servers:
        serve(s)

    info = {'port': main_srv.server_address[1], 'control_port': ctl_port,
            'extra': extra, 'pid': os.getpid()}
    if a.ready_file:
        tmp = a.ready_file + '.tmp'
        with open(tmp, 'w') as fh:
            json.dump(info, fh)
        os.rename(tmp, a.ready_file)
    sys.stdout.write('mock OneClickDz: %s://%s:%d/v3 control %s\n'
                     % ('http' if a.plain else 'https', a.host, info['port'],
                        'http://%s:%d' % (a.host, ctl_port)
                        if ctl_port else 'none'))
    sys.stdout.flush()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set():
        stop.wait(1)
    os._exit(0)


if __name__ == '__main__':
    main()
