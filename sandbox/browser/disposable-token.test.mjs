//! The widget API against disposable tokens minted by an independent library (npm `jose`), over real HTTP:
//! Kommo-shaped tokens are accepted; every negative case of RELIABILITY.md §2.5 gets 401 (or 431) and changes nothing.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test, before } from 'node:test';

import { SignJWT, base64url } from 'jose';

import { SANDBOX_URL, SERVER_URL, freshAccount } from './support.mjs';

const CLIENT_ID = process.env.KOMMO_CLIENT_ID;
const SECRET = new TextEncoder().encode(process.env.KOMMO_CLIENT_SECRET || '');
const USER_ID = 5500001;

function now() {
  return Math.floor(Date.now() / 1000);
}

/** Claims as Kommo puts them in a disposable token, for `account` (with `subdomain`). */
function claims(account, subdomain, overrides = {}) {
  const t = now();
  return {
    iss: `https://${subdomain}.kommo.com`, aud: SERVER_URL, jti: randomUUID(), iat: t, nbf: t, exp: t + 1800,
    account_id: account, user_id: USER_ID, subdomain, client_uuid: CLIENT_ID, is_admin: true, ...overrides,
  };
}

/** Signs `payload` with jose (HS256 unless `alg` says otherwise), without jose adding or checking claims. */
async function sign(payload, { alg = 'HS256', key = SECRET } = {}) {
  return new SignJWT(payload).setProtectedHeader({ alg, typ: 'JWT' }).sign(key);
}

/** A token whose header is `header` and whose signature is `signature` (for algorithm-confusion cases). */
function unsigned(header, payload, signature = '') {
  const part = (value) => base64url.encode(JSON.stringify(value));
  return `${part(header)}.${part(payload)}.${signature}`;
}

async function call(method, path, token, body) {
  const headers = { 'content-type': 'application/json' };
  if (token !== undefined) headers['x-auth-token'] = token;
  const response = await fetch(`${SERVER_URL}${path}`, { method, headers, body: body && JSON.stringify(body) });
  const text = await response.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: response.status, json };
}

const ALICE = { account: freshAccount(), subdomain: 'jose-alice' };
const BOB = { account: freshAccount(), subdomain: 'jose-bob' };

async function install({ account, subdomain }) {
  const created = await fetch(`${SANDBOX_URL}/sandbox/kommo/accounts`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id: account, subdomain }),
  });
  assert.ok(created.ok, `creating account ${account} in the local Kommo: HTTP ${created.status}`);
  const installed = await fetch(`${SANDBOX_URL}/sandbox/kommo/install`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ account_id: account }),
  });
  assert.ok(installed.ok, `installing account ${account}: HTTP ${installed.status}`);
  for (let i = 0; i < 50; i += 1) {
    const connection = await call('GET', '/widget/v1/connection', await sign(claims(account, subdomain)));
    if (connection.json?.state === 'installed') return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`account ${account} did not become installed`);
}

before(async () => {
  assert.ok(CLIENT_ID && SECRET.length, 'KOMMO_CLIENT_ID and KOMMO_CLIENT_SECRET must be set (cargo xtask test sets them)');
  await install(ALICE);
  await install(BOB);
  const saved = await call('PUT', '/widget/v1/settings', await sign(claims(ALICE.account, ALICE.subdomain)),
    settingsBody({ password: 'sandbox-voip-password' }));
  assert.equal(saved.status, 200, JSON.stringify(saved.json));
});

/** A settings body in the shape of `shared::IntegrationSettings`, signing in to the local Kommo's VoIP provider. */
function settingsBody({ login = 'agent', password, extra = {} } = {}) {
  return {
    active: true,
    credentials: { method: 'password', provider_url: `${SANDBOX_URL}/voip`, login, password },
    call_handling: {
      widget: { ringing_sound: true, call_feedback_modal: true, auto_open_card: false, call_quality_rating: false },
      unknown_incoming: { create: 'unsorted', unsorted_accept: 'manual' },
      known_incoming: { create_lead_when_no_active_lead: false, note_number_when_several: true },
      missed: { create_task: true, due_in_minutes: 60, link_to_lead: true, responsible: { kind: 'contact_responsible' } },
      outgoing_new: { create_contact_and_lead: true },
      placement: { pipeline_id: null, status_id: null },
    },
    extensions: { entries: [], fallback_user_id: null },
    ...extra,
  };
}

async function aliceSettings() {
  const reply = await call('GET', '/widget/v1/settings', await sign(claims(ALICE.account, ALICE.subdomain)));
  assert.equal(reply.status, 200);
  return reply.json;
}

test('a Kommo-shaped token minted by an independent library is accepted and names its own account', async () => {
  const settings = await aliceSettings();
  assert.equal(settings.credentials.login, 'agent');
  assert.equal(settings.credentials.has_password, true);
  assert.equal(JSON.stringify(settings).includes('sandbox-voip-password'), false);
});

test('every forged, expired or out-of-policy token is refused and changes nothing', async () => {
  const { account, subdomain } = ALICE;
  const t = now();
  const base = () => claims(account, subdomain);
  const without = (name) => { const c = base(); delete c[name]; return c; };
  const cases = [
    ['alg none', unsigned({ alg: 'none', typ: 'JWT' }, base())],
    ['alg None', unsigned({ alg: 'None', typ: 'JWT' }, base())],
    ['alg NONE', unsigned({ alg: 'NONE', typ: 'JWT' }, base())],
    ['HS256 header with an empty signature', unsigned({ alg: 'HS256', typ: 'JWT' }, base())],
    ['no trailing dot', unsigned({ alg: 'HS256', typ: 'JWT' }, base()).slice(0, -1)],
    ['HS512 with the right key', await sign(base(), { alg: 'HS512' })],
    ['RS256 header', unsigned({ alg: 'RS256', typ: 'JWT' }, base(), 'c2lnbmF0dXJl')],
    ['wrong secret', await sign(base(), { key: new TextEncoder().encode('not-the-client-secret') })],
    ['one payload byte changed', await (async () => {
      const [h, p, s] = (await sign(base())).split('.');
      const payload = JSON.parse(new TextDecoder().decode(base64url.decode(p)));
      payload.user_id += 1;
      return `${h}.${base64url.encode(JSON.stringify(payload))}.${s}`;
    })()],
    ['expired 61 s ago', await sign({ ...base(), iat: t - 1861, nbf: t - 1861, exp: t - 61 })],
    // Well past the 60 s leeway, however long the cases before it take.
    ['not valid for 90 s', await sign({ ...base(), nbf: t + 90 })],
    ['nbf as a string', await sign({ ...base(), nbf: String(t + 99999999) })],
    ['exp as a string', await sign({ ...base(), exp: String(t + 600) })],
    ['missing exp', await sign(without('exp'))],
    ['missing nbf', await sign(without('nbf'))],
    ['missing account_id', await sign(without('account_id'))],
    ['wrong aud', await sign({ ...base(), aud: 'https://someone-else.example' })],
    ['aud array without ours', await sign({ ...base(), aud: ['https://a.example', 'https://b.example'] })],
    ['wrong client_uuid', await sign({ ...base(), client_uuid: 'another-integration' })],
    ['iss of another subdomain', await sign({ ...base(), iss: `https://${BOB.subdomain}.kommo.com` })],
    ['lifetime longer than Kommo issues', await sign({ ...base(), exp: t + 7200 })],
  ];
  for (const [name, token] of cases) {
    for (const [method, path, body] of [['GET', '/widget/v1/settings'],
      ['PUT', '/widget/v1/settings', settingsBody({ login: 'mallory', password: 'x' })],
      ['POST', '/widget/v1/push/ticket']]) {
      const reply = await call(method, path, token, body);
      assert.equal(reply.status, 401, `${name}: ${method} ${path} answered ${reply.status}`);
      assert.equal(reply.json?.error?.code, 'unauthorized', name);
    }
  }
  const missing = await call('GET', '/widget/v1/settings', undefined);
  assert.equal(missing.status, 401);
  const oversized = await call('GET', '/widget/v1/settings', 'a'.repeat(10 * 1024));
  assert.ok([400, 431].includes(oversized.status), `a 10 KB token answered ${oversized.status}`);
  assert.equal((await aliceSettings()).credentials.login, 'agent', 'nothing changed');
});

test('a token of an account that never installed is refused as not installed', async () => {
  const stranger = freshAccount();
  const reply = await call('PUT', '/widget/v1/settings', await sign(claims(stranger, 'jose-stranger')),
    settingsBody({ login: 'x', password: 'y' }));
  assert.equal(reply.status, 401);
  assert.equal(reply.json.error.code, 'not_installed');
});

test('a replayed token is refused', async () => {
  const token = await sign(claims(ALICE.account, ALICE.subdomain));
  assert.equal((await call('GET', '/widget/v1/settings', token)).status, 200);
  const replay = await call('PUT', '/widget/v1/settings', token, settingsBody({ login: 'replayed', password: 'x' }));
  assert.equal(replay.status, 401);
  assert.equal((await aliceSettings()).credentials.login, 'agent');
});

test("account B's token never reads or writes account A's settings", async () => {
  const bobToken = () => sign(claims(BOB.account, BOB.subdomain));
  const bob = await call('GET', '/widget/v1/settings', await bobToken());
  assert.equal(bob.status, 200);
  assert.equal(bob.json.credentials.login, '');
  assert.equal(bob.json.webhook, null);
  const injected = await call('PUT', '/widget/v1/settings', await bobToken(),
    settingsBody({ login: 'bob', password: 'x', extra: { account_id: ALICE.account } }));
  assert.ok([400, 422].includes(injected.status), `a body naming an account is refused (${injected.status})`);
  assert.equal((await aliceSettings()).credentials.login, 'agent');
});
