//! Twilio's signatures checked by Twilio's own library (npm `twilio`: `getExpectedTwilioSignature`,
//! `validateRequest`): its published "Webhooks security" example, and every callback the local Twilio plays (the
//! same recipe the server verifies, `server/src/adapters/twilio.rs`; the server's tests post these callbacks).
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { test } from 'node:test';

import twilio from 'twilio';

import { SANDBOX_URL } from './support.mjs';

const { getExpectedTwilioSignature, validateRequest } = twilio;

test('Twilio\'s library gives its published example signature', () => {
  const params = { CallSid: 'CA1234567890ABCDE', Caller: '+14158675310', Digits: '1234', From: '+14158675310',
    To: '+18005551212' };
  const url = 'https://mycompany.com/myapp.php?foo=1&bar=2';
  assert.equal(getExpectedTwilioSignature('12345', url, params), 'GvWf1cFY/Q7PnoempGyD5oXAezc=');
  assert.ok(validateRequest('12345', 'GvWf1cFY/Q7PnoempGyD5oXAezc=', url, params));
});

test('every callback the local Twilio plays validates with Twilio\'s library', async () => {
  const received = [];
  const server = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => { body += chunk; });
    request.on('end', () => {
      received.push({ url: request.url, signature: request.headers['x-twilio-signature'], body });
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end('{"stored":1,"duplicates":0}');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${server.address().port}/hooks/voip/twilio-check`;
  const token = 'token-of-the-test';
  try {
    for (const scenario of ['answered', 'missed', 'busy', 'outgoing']) {
      const played = await fetch(`${SANDBOX_URL}/sandbox/twilio/play`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ webhook_url: base, auth_token: token, account_sid: 'AC0123456789abcdef0123456789abcdef',
          scenario }),
      });
      assert.equal(played.status, 200, scenario);
    }
    assert.ok(received.length >= 12, `${received.length} callbacks`);
    for (const { url, signature, body } of received) {
      const params = Object.fromEntries(new URLSearchParams(body));
      const full = `http://127.0.0.1:${server.address().port}${url}`;
      assert.ok(validateRequest(token, signature, full, params), `${full} ${body}`);
      assert.ok(!validateRequest('another token', signature, full, params));
    }
  } finally {
    server.close();
  }
});
