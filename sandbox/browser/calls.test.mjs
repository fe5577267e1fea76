//! Incoming calls end to end: a provider event on the webhook URL becomes a popup in the page.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { STEP_MS, configure, launch, openWidget, screenshot } from './support.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

async function streamOpen(stream) {
  const deadline = Date.now() + STEP_MS;
  while (!stream.open) {
    if (Date.now() > deadline) throw new Error('the widget never opened its push stream');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test('a webhook posted to the shown URL pops up the caller number', async () => {
  const { page, context, errors, stream } = await openWidget(browser);
  const url = await configure(page);
  await page.click('.modal .sandbox-modal__cancel');
  await streamOpen(stream);
  const from = '+5511912345678';
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ callId: `direct-${Date.now()}`, voipAccountId: 'sandbox-voip', from,
      to: '+5511333330000', status: 'ringing', startTime: Math.floor(Date.now() / 1000), extension: '101' }),
  });
  assert.equal(response.status, 200, await response.text());
  const shown = page.locator('.kvoip-popup .kvoip-popup__from', { hasText: from });
  await shown.waitFor({ state: 'visible', timeout: STEP_MS });
  await screenshot(page, 'popup.png');
  assert.deepEqual(errors, []);
  await context.close();
});

test('a call from the provider stand-in pops up the caller number', async () => {
  const { page, context, errors, stream } = await openWidget(browser);
  await configure(page);
  // Closing the modal hands the shown webhook URL to the page's provider form.
  await page.click('.modal .sandbox-modal__cancel');
  await streamOpen(stream);
  const from = '+5521955554444';
  await page.fill('#sandbox-call-from', from);
  await page.click('#sandbox-simulate-call');
  await page.waitForFunction(() => window.__sandbox.lastProviderCall, null, { timeout: STEP_MS });
  const answer = await page.evaluate(() => window.__sandbox.lastProviderCall);
  assert.equal(answer.status, 200, JSON.stringify(answer));
  await page.locator('.kvoip-popup .kvoip-popup__from', { hasText: from }).waitFor({ state: 'visible', timeout: STEP_MS });
  assert.deepEqual(errors, []);
  await context.close();
});

test('a call to one account never pops up in another account', async () => {
  const mine = await openWidget(browser);
  const url = await configure(mine.page);
  await mine.page.click('.modal .sandbox-modal__cancel');
  const other = await openWidget(browser);
  await configure(other.page);
  await other.page.click('.modal .sandbox-modal__cancel');
  await streamOpen(mine.stream);
  await streamOpen(other.stream);
  const from = '+5531977776666';
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ callId: `isolation-${Date.now()}`, voipAccountId: 'sandbox-voip', from,
      to: '+5511333330000', status: 'ringing', startTime: Math.floor(Date.now() / 1000) }),
  });
  assert.equal(response.status, 200);
  await mine.page.locator('.kvoip-popup .kvoip-popup__from', { hasText: from }).waitFor({ state: 'visible', timeout: STEP_MS });
  // The other page had as long to receive it, and then some.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  assert.equal(await other.page.locator('.kvoip-popup').count(), 0);
  assert.deepEqual([...mine.errors, ...other.errors], []);
  await mine.context.close();
  await other.context.close();
});
