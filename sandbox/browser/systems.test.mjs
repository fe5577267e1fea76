//! Calls played through the telephony systems' stand-ins from the host page's systems panel, as a newcomer
//! plays them: the settings saved with the system (its credentials checked by its local API), a whole call
//! played into the webhook the settings show, signed the system's way, the popup showing it, and the call
//! logged once in the local Kommo.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  SANDBOX_URL, STEP_MS, fillProvider, launch, openSettings, openWidget, partScreenshot, save, screenshot, seed,
  streamOpen, waitForForm,
} from './support.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/**
 * A page whose settings chose `system` with these credentials (the save checks them with the system's local
 * API), the webhook URL shown; the modal closed, the push stream open.
 */
async function readyWith(system, credentials) {
  const opened = await openWidget(browser);
  const { page } = opened;
  await openSettings(page);
  await waitForForm(page);
  await page.check(`.kvoip-settings input[name="system"][value=${system}]`);
  await fillProvider(page, credentials);
  if (!(await save(page))) assert.fail(`the save was refused: ${await page.textContent('.modal .kvoip-settings')}`);
  if (!(await page.$('.modal .kvoip-settings'))) {
    await openSettings(page);
    await waitForForm(page);
  }
  await page.waitForFunction(() => (document.querySelector('.kvoip-webhook-url')?.value
    || document.querySelector('.kvoip-webhook-url')?.textContent || '').trim().startsWith('http'), null, { timeout: STEP_MS });
  await page.click('.modal .sandbox-modal__cancel');
  await streamOpen(opened.stream);
  return opened;
}

/** Chooses the system and the call in the panel, presses Play; resolves with the play's record. */
async function play(page, system, scenario, from) {
  await page.selectOption('#sandbox-system', system);
  await page.selectOption('#sandbox-system-scenario', scenario);
  if (from) await page.fill('#sandbox-call-from', from);
  const before = await page.evaluate(() => (window.__sandbox.systemPlays || []).length);
  await page.click('#sandbox-system-play');
  await page.waitForFunction((count) => (window.__sandbox.systemPlays || []).length > count, before, { timeout: STEP_MS });
  return page.evaluate(() => window.__sandbox.systemPlays.at(-1));
}

/** The account's Kommo calls of `callId`, once there; then a moment more to see that no second one comes. */
async function loggedOnce(account, callId) {
  const deadline = Date.now() + STEP_MS;
  const calls = async () => (await (await fetch(`${SANDBOX_URL}/sandbox/kommo/writes?account_id=${account}`)).json())
    .filter((write) => write.path === '/api/v4/calls' && write.committed)
    .flatMap((write) => write.body)
    .filter((call) => call.uniq === callId);
  while ((await calls()).length === 0) {
    assert.ok(Date.now() < deadline, `call ${callId} reached Kommo`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await new Promise((resolve) => setTimeout(resolve, 500));
  const logged = await calls();
  assert.equal(logged.length, 1, JSON.stringify(logged));
  return logged[0];
}

test('a Zadarma call played from the host page pops up while it rings and is logged once, answered', async () => {
  const { page, context, errors, account } = await readyWith('zadarma',
    { url: `${SANDBOX_URL}/zadarma`, login: 'sandbox-zadarma-key', password: 'sandbox-zadarma-secret' });
  await seed('contacts', { account_id: account, name: 'Bianca Souza', phones: ['+5521988887777'] });
  const hint = await page.textContent('#sandbox-system-hint');
  assert.ok(hint.includes(`${SANDBOX_URL}/zadarma`) && hint.includes('sandbox-zadarma-key'), hint);
  await page.selectOption('#sandbox-system', 'zadarma');
  await page.selectOption('#sandbox-system-scenario', 'answered');
  await page.fill('#sandbox-call-from', '+5521988887777');
  await page.click('#sandbox-system-play');
  // NOTIFY_START reached the server signed the Zadarma way: the manager sees the call while it rings.
  const popup = page.locator('.kvoip-popup');
  await popup.first().waitFor({ state: 'visible', timeout: STEP_MS });
  await popup.first().locator('.kvoip-popup__name', { hasText: 'Bianca Souza' }).waitFor({ timeout: STEP_MS });
  assert.equal(await popup.first().locator('.kvoip-popup__number').textContent(), '(21) 98888-7777');
  await screenshot(page, 'systems-zadarma-ringing.png');
  await page.waitForFunction(() => (window.__sandbox.systemPlays || []).length === 1, null, { timeout: STEP_MS });
  const played = await page.evaluate(() => window.__sandbox.systemPlays[0]);
  assert.equal(played.status, 200, JSON.stringify(played));
  assert.ok(played.answer.deliveries.length >= 3, JSON.stringify(played));
  assert.ok(played.answer.deliveries.every((delivery) => delivery.status === 200), JSON.stringify(played));
  assert.match(await page.textContent('#sandbox-system-result'), /deliveries, the webhook answered 200( 200)+$/);
  const callId = played.answer.pbx_call_id;
  assert.equal(await popup.first().getAttribute('data-call-id'), callId, 'the popup is that call');
  const call = await loggedOnce(account, callId);
  assert.equal(call.direction, 'inbound');
  assert.equal(call.duration, 42, "NOTIFY_END's duration");
  assert.equal(call.phone, '+5521988887777');
  await partScreenshot(page.locator('#sandbox-system-form'), 'systems-panel.png');
  assert.deepEqual(errors, []);
  await context.close();
});

test('a missed Twilio call and an outgoing one are logged once each; Yeastar asks for the secret; no AMI says so', async () => {
  const { page, context, errors, account } = await readyWith('twilio',
    { url: `${SANDBOX_URL}/twilio`, login: 'AC0000000000000000000000000000d3m0', password: 'sandbox-twilio-auth-token' });
  await seed('contacts', { account_id: account, name: 'Caio Lima', phones: ['+5521977776666'] });
  const missed = await play(page, 'twilio', 'missed', '+5521977776666');
  assert.equal(missed.status, 200, JSON.stringify(missed));
  const call = await loggedOnce(account, missed.answer.call_id);
  assert.equal(call.direction, 'inbound');
  assert.equal(call.duration, 0);
  assert.notEqual(call.call_status, 4, 'no conversation');
  // The missed call asks for its result, as any call the account asks results for; the manager skips it.
  const skip = page.locator('.kvoip-call-result .kvoip-result__skip');
  await skip.waitFor({ state: 'visible', timeout: STEP_MS });
  await skip.click();
  await skip.waitFor({ state: 'detached', timeout: STEP_MS });

  // Yeastar signs with the webhook's secret, which the page has only once the settings showed it.
  await page.evaluate(() => { document.querySelector('#sandbox-call-secret').value = ''; });
  await page.selectOption('#sandbox-system', 'yeastar');
  await page.click('#sandbox-system-play');
  await page.waitForFunction(() => document.querySelector('#sandbox-system-result').dataset.state === 'refused');
  assert.match(await page.textContent('#sandbox-system-result'), /signing secret/);
  const asterisk = await play(page, 'asterisk', 'answered');
  assert.equal(asterisk.status, 404, 'this local Kommo was started without an AMI stand-in');
  assert.match(await page.textContent('#sandbox-system-result'), /SANDBOX_AMI_ADDR/);

  // An outgoing call (the manager's click-to-call leg): logged once, and its end asks for the call's result.
  const outgoing = await play(page, 'twilio', 'outgoing', '+5521977776666');
  const out = await loggedOnce(account, outgoing.answer.call_id);
  assert.equal(out.direction, 'outbound');
  assert.equal(out.phone, '+5521977776666');
  await page.locator('.kvoip-call-result .kvoip-result__save').waitFor({ state: 'visible', timeout: STEP_MS });
  assert.deepEqual(errors, []);
  await context.close();
});
