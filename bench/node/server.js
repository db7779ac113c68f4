'use strict';

// The card endpoint as a storefront would otherwise run it, for the
// benchmark: Express 5 and pg 8, one process per core (cluster), the
// OneClickDz guide's in-app flow. Session lookup, ownership query,
// AES-256-GCM decryption with Node's crypto, audit insert, JSON.
// Written the way a competent Node developer would deploy it: named
// (prepared) statements, a pool per process, no ETag on no-store
// bodies, NODE_ENV=production, no logging per request.
//
// Environment: PORT, PGHOST, PGPORT, PGUSER, PGDATABASE (libpq's),
// PG_POOL_TOTAL (shared by the processes; 8), WORKERS (cores),
// CARD_KEY_ID, CARD_KEY_HEX (64 hex digits).

const cluster = require('node:cluster');
const crypto = require('node:crypto');
const os = require('node:os');

const WORKERS = Number(process.env.WORKERS) || os.availableParallelism();
const POOL_TOTAL = Number(process.env.PG_POOL_TOTAL) || 8;

if (cluster.isPrimary) {
  for (let i = 0; i < WORKERS; i++) {
    cluster.fork();
  }
  cluster.on('exit', (w, code, signal) => {
    if (!process.exitCode && signal !== 'SIGTERM') {
      console.error(`worker ${w.process.pid} died (${signal || code})`);
    }
  });
  process.on('SIGTERM', () => {
    for (const id in cluster.workers) {
      cluster.workers[id].kill('SIGTERM');
    }
    process.exit(0);
  });
  return;
}

const express = require('express');
const { Pool } = require('pg');

const KEY_ID = process.env.CARD_KEY_ID;
const KEY = Buffer.from(process.env.CARD_KEY_HEX || '', 'hex');

if (KEY.length !== 32) {
  console.error('CARD_KEY_HEX must be 64 hex digits');
  process.exit(1);
}

const pool = new Pool({
  max: Math.max(1, Math.floor(POOL_TOTAL / WORKERS)),
  idleTimeoutMillis: 0,
});

pool.on('error', (err) => console.error('pg pool:', err.message));

const INSTRUCTIONS = {
  ADSL: {
    language: 'en',
    title: 'How to recharge your ADSL line',
    steps: [
      'Pick up your landline phone.',
      'Dial *600#.',
      'Choose "Recharge".',
      'Enter the card code.',
      'Press # to confirm.',
      'The credit is added to your line immediately.',
    ],
    support: 'Need help? Call 3003 from your ADSL line.',
  },
  '4G': {
    language: 'en',
    title: 'How to recharge your 4G internet',
    steps: [
      'Make sure the 4G SIM card is active.',
      'Dial *600# from your 4G device.',
      'Choose "Recharge Internet".',
      'Enter the card code.',
      'Press # to confirm.',
      'Your data is activated within a few minutes.',
    ],
    support: 'Need help? Call 3003 from your mobile.',
  },
};

const Q_SESSION = {
  name: 'session',
  text: 'SELECT user_id FROM ocdz.sessions'
      + ' WHERE token_hash = $1 AND expires_at > now()',
};

const Q_ORDER = {
  name: 'order',
  text: 'SELECT status, type, number, value, card_enc, num_trans,'
      + ' date_traitement, refund_message, delivered_at IS NULL AS first'
      + ' FROM ocdz.orders WHERE topup_id = $1 AND user_id = $2',
};

const Q_AUDIT = {
  name: 'audit',
  text: 'INSERT INTO ocdz.audit'
      + ' (event, topup_id, user_id, method, client_ip, user_agent, detail)'
      + " VALUES ($1, $2, $3, 'in-app', $4, $5, $6)",
};

const Q_DELIVERED = {
  name: 'delivered',
  text: 'UPDATE ocdz.orders SET delivered_at = now()'
      + ' WHERE topup_id = $1 AND delivered_at IS NULL',
};

function q(stmt, values) {
  return pool.query({ name: stmt.name, text: stmt.text, values });
}

// The module's record, or the guide's Node.js recipe (hex JSON).
function decryptCard(topupId, stored) {
  let iv, data, tag, aad = null;

  if (stored.startsWith('{')) {
    const j = JSON.parse(stored);
    iv = Buffer.from(j.iv, 'hex');
    data = Buffer.from(j.encryptedData, 'hex');
    tag = Buffer.from(j.authTag, 'hex');
  } else {
    const [version, keyId, b64] = stored.split('.');
    if (version !== 'ocdz1' || keyId !== KEY_ID || !b64) {
      throw new Error('unknown record');
    }
    const rec = Buffer.from(b64, 'base64url');
    iv = rec.subarray(0, 12);
    data = rec.subarray(12, rec.length - 16);
    tag = rec.subarray(rec.length - 16);
    aad = Buffer.from(`ocdz1\0${keyId}\0${topupId}`);
  }

  const d = crypto.createDecipheriv('aes-256-gcm', KEY, iv);
  if (aad) {
    d.setAAD(aad);
  }
  d.setAuthTag(tag);
  return Buffer.concat([d.update(data), d.final()]).toString('utf8');
}

function fail(res, status, error, message, extra) {
  res.status(status).json({ success: false, error, message, ...extra });
}

function audit(event, topupId, userId, req, detail) {
  return q(Q_AUDIT, [event, topupId, userId, req.ip,
                     req.get('user-agent') || null, detail || null]);
}

const app = express();

app.disable('x-powered-by');
app.set('etag', false);

app.use((req, res, next) => {
  res.set({
    'Cache-Control': 'no-store',
    Pragma: 'no-cache',
    'X-Content-Type-Options': 'nosniff',
    Vary: 'Accept-Language',
  });
  next();
});

app.get('/api/internet-orders/:id/card', async (req, res) => {
  const topupId = req.params.id.toLowerCase();

  if (!/^[0-9a-f]{24}$/.test(topupId)) {
    return fail(res, 400, 'INVALID_TOPUP_ID',
                'The top-up id must be 24 hexadecimal characters.');
  }

  const auth = req.get('authorization') || '';
  const token = auth.startsWith('Bearer ') ? auth.slice(7).trim() : '';

  if (token.length < 16) {
    res.set('WWW-Authenticate', 'Bearer realm="ocdz"');
    return fail(res, 401, 'SESSION_REQUIRED', 'A valid session is required.');
  }

  const hash = crypto.createHash('sha256').update(token).digest();
  const s = await q(Q_SESSION, [hash]);

  if (s.rowCount === 0) {
    res.set('WWW-Authenticate', 'Bearer realm="ocdz"');
    return fail(res, 401, 'SESSION_REQUIRED', 'A valid session is required.');
  }

  const userId = s.rows[0].user_id;
  const o = await q(Q_ORDER, [topupId, userId]);

  if (o.rowCount === 0) {
    await audit('ORDER_NOT_FOUND', topupId, userId, req);
    return fail(res, 404, 'ORDER_NOT_FOUND', 'No such order.');
  }

  const order = o.rows[0];

  if (order.status === 'REFUNDED') {
    await audit('ORDER_REFUNDED', topupId, userId, req);
    return fail(res, 410, 'ORDER_REFUNDED',
                'The order failed and was refunded.',
                { status: 'REFUNDED', refundMessage: order.refund_message });
  }

  if (order.status !== 'FULFILLED') {
    await audit('ORDER_NOT_READY', topupId, userId, req, order.status);
    return fail(res, 409, 'ORDER_NOT_READY',
                'The order is not fulfilled yet.', { status: order.status });
  }

  let cardCode;

  try {
    cardCode = decryptCard(topupId, order.card_enc || '');
  } catch (e) {
    await audit('CARD_REVEAL_FAILED', topupId, userId, req, e.message);
    return fail(res, 500, 'DELIVERY_FAILED',
                'The card cannot be delivered now; support has been told.');
  }

  // the card goes out only once its release is recorded
  await audit('CARD_REVEALED', topupId, userId, req);

  if (order.first) {
    await q(Q_DELIVERED, [topupId]);
  }

  res.json({
    success: true,
    topupId,
    status: 'FULFILLED',
    type: order.type,
    number: order.number,
    value: order.value,
    cardCode,
    transactionNumber: order.num_trans,
    processedDate: order.date_traitement,
    instructions: INSTRUCTIONS[order.type] || INSTRUCTIONS.ADSL,
  });
});

app.use((err, req, res, next) => {
  console.error('request failed:', err.message);
  res.set('Retry-After', '2');
  fail(res, 503, 'SERVICE_UNAVAILABLE',
       'The service is temporarily unavailable; try again shortly.');
});

app.listen(Number(process.env.PORT) || 3000, '127.0.0.1');
