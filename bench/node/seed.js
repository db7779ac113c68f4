'use strict';

// Benchmark data: fulfilled orders of many users, their cards sealed in
// the module's own record format (ocdz1.<key id>.<base64url(nonce ||
// ciphertext || tag)>, associated data "ocdz1" NUL key id NUL top-up id),
// one session per user.
//
//   node seed.js OUTDIR KEY_HEX KEY_ID USERS ORDERS
//
// Writes OUTDIR/orders.tsv and OUTDIR/sessions.tsv (COPY text format)
// and OUTDIR/targets.txt: "token topup_id user_id card_code" a line.

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const [outdir, keyHex, keyId, usersArg, ordersArg] = process.argv.slice(2);
const key = Buffer.from(keyHex || '', 'hex');
const users = Number(usersArg);
const orders = Number(ordersArg);

if (!outdir || key.length !== 32 || !/^[A-Za-z0-9_-]{1,32}$/.test(keyId)
    || !(users > 0) || !(orders >= users)) {
  console.error('usage: node seed.js OUTDIR KEY_HEX KEY_ID USERS ORDERS');
  process.exit(2);
}

function seal(topupId, plain) {
  const nonce = crypto.randomBytes(12);
  const c = crypto.createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(Buffer.from(`ocdz1\0${keyId}\0${topupId}`));
  const ct = Buffer.concat([c.update(plain, 'utf8'), c.final()]);
  const rec = Buffer.concat([nonce, ct, c.getAuthTag()]);
  return `ocdz1.${keyId}.${rec.toString('base64url')}`;
}

const tokens = [];
const sessions = [];

for (let u = 0; u < users; u++) {
  const token = crypto.randomBytes(32).toString('base64url');
  const hash = crypto.createHash('sha256').update(token).digest('hex');
  tokens.push(token);
  sessions.push(`\\\\x${hash}\tbench-user-${u}\t2100-01-01 00:00:00+00\n`);
}

const rows = [];
const targets = [];
const seen = new Set();

for (let i = 0; i < orders; i++) {
  let id;
  do {
    id = crypto.randomBytes(12).toString('hex');
  } while (seen.has(id));
  seen.add(id);

  const u = i % users;
  const type = i % 5 === 4 ? '4G' : 'ADSL';
  const number = type === 'ADSL'
    ? '0' + String(21000000 + i).padStart(8, '0')
    : '213' + String(550000000 + i).padStart(9, '0');
  const card = String(1e15 + crypto.randomInt(2 ** 47)).slice(0, 16);

  rows.push([id, `bench-user-${u}`, type, number, 1000, 'FULFILLED',
             seal(id, card), `AT-BENCH-${String(i).padStart(6, '0')}`,
             '2026-01-01T00:00:00.000Z', '2026-01-01 00:00:00+00',
             '2026-01-01 00:05:00+00'].join('\t') + '\n');
  targets.push(`${tokens[u]} ${id} bench-user-${u} ${card}\n`);
}

fs.writeFileSync(path.join(outdir, 'orders.tsv'), rows.join(''));
fs.writeFileSync(path.join(outdir, 'sessions.tsv'), sessions.join(''));
fs.writeFileSync(path.join(outdir, 'targets.txt'), targets.join(''));
