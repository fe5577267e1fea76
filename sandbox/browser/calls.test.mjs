//! Incoming calls end to end: a provider event on the webhook URL becomes a popup in the page.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { STEP_MS, configure, launch, openWidget, postEvent, screenshot, streamOpen } from './support.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('a webhook posted to the shown URL pops up the caller number', async () => {
  const { page, context, errors, stream } = await openWidget(browser);
  const webhook = await configure(page);
  await page.click('.modal .sandbox-modal__cancel');
  await streamOpen(stream);
  const from = '+5511912345678';
  const response = await postEvent(webhook, { callId: `direct-${Date.now()}`, from, status: 'ringing', extension: '101' });
  assert.equal(response.status, 200, await response.text());
  const shown = page.locator(`.kvoip-popup[data-number="${from}"]`);
  await shown.waitFor({ state: 'visible', timeout: STEP_MS });
  await screenshot(page, 'popup.png');
  assert.deepEqual(errors, []);
  await context.close();
});

test('a call from the provider stand-in pops up the caller number', async () => {
  const { page, context, errors, stream } = await openWidget(browser);
  await configure(page);
  // Closing the modal hands the shown webhook URL and signing secret to the page's provider form.
  await page.click('.modal .sandbox-modal__cancel');
  assert.match(await page.inputValue('#sandbox-call-secret'), /^whsec_/);
  await streamOpen(stream);
  const from = '+5521955554444';
  await page.fill('#sandbox-call-from', from);
  await page.click('#sandbox-simulate-call');
  await page.waitForFunction(() => window.__sandbox.lastProviderCall, null, { timeout: STEP_MS });
  const answer = await page.evaluate(() => window.__sandbox.lastProviderCall);
  assert.equal(answer.status, 200, JSON.stringify(answer));
  await page.locator(`.kvoip-popup[data-number="${from}"]`).waitFor({ state: 'visible', timeout: STEP_MS });
  assert.deepEqual(errors, []);
  await context.close();
});

test('a call to one account never pops up in another account', async () => {
  const mine = await openWidget(browser);
  const webhook = await configure(mine.page);
  await mine.page.click('.modal .sandbox-modal__cancel');
  const other = await openWidget(browser);
  await configure(other.page);
  await other.page.click('.modal .sandbox-modal__cancel');
  await streamOpen(mine.stream);
  await streamOpen(other.stream);
  const from = '+5531977776666';
  const response = await postEvent(webhook, { callId: `isolation-${Date.now()}`, from, status: 'ringing' });
  assert.equal(response.status, 200);
  await mine.page.locator(`.kvoip-popup[data-number="${from}"]`).waitFor({ state: 'visible', timeout: STEP_MS });
  // The other page had as long to receive it, and then some.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  assert.equal(await other.page.locator('.kvoip-popup').count(), 0);
  assert.deepEqual([...mine.errors, ...other.errors], []);
  await mine.context.close();
  await other.context.close();
});

test('an unsigned or wrongly signed event is refused and pops up nothing', async () => {
  const { page, context, errors, stream } = await openWidget(browser);
  const webhook = await configure(page);
  await page.click('.modal .sandbox-modal__cancel');
  await streamOpen(stream);
  const event = JSON.stringify({ callId: `unsigned-${Date.now()}`, voipAccountId: 'sandbox-voip', from: '+5511900001111',
    to: '+551133330000', status: 'ringing', startTime: Math.floor(Date.now() / 1000) });
  const unsigned = await fetch(webhook.url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: event });
  assert.equal(unsigned.status, 401);
  const forged = await postEvent({ url: webhook.url, secret: 'whsec_' + Buffer.from('not the secret').toString('base64') },
    { callId: `forged-${Date.now()}`, from: '+5511900001111', status: 'ringing' });
  assert.equal(forged.status, 401);
  // A signed event after them shows, alone.
  const from = '+5511900002222';
  assert.equal((await postEvent(webhook, { callId: `signed-${Date.now()}`, from, status: 'ringing' })).status, 200);
  await page.locator(`.kvoip-popup[data-number="${from}"]`).waitFor({ state: 'visible', timeout: STEP_MS });
  assert.equal(await page.locator('.kvoip-popup').count(), 1);
  assert.deepEqual(errors, []);
  await context.close();
});
