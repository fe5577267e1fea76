//! The call-result modal after a call ends, and the failed-deliveries section of the settings, against the
//! real server: what the manager and the admin see, and what the server accepted.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  SANDBOX_URL, STEP_MS, archiveStrings, configure, launch, openSettings, openWidget, partScreenshot,
  postEvent, screenshot, serverGet, serverRequest, streamOpen, waitForForm,
} from './support.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const modal = (callId) => `.kvoip-result[data-call-id="${callId}"]`;
const setting = (name) => `.kvoip-settings input[name="call_handling.widget.${name}"]`;

/** A configured page (settings saved, modal closed, push stream open); `tweak` changes options before the save. */
async function configured(options = {}, tweak = undefined) {
  const opened = await openWidget(browser, options);
  const webhook = await configure(opened.page, tweak);
  await opened.page.click('.modal .sandbox-modal__cancel');
  await streamOpen(opened.stream);
  return { ...opened, webhook };
}

/** A call that rang and then ended with `status`, posted by the provider; resolves with its id. */
async function endedCall(webhook, { from = '+5511955551234', status = 'ended', prefix = 'result' } = {}) {
  const callId = `${prefix}-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
  for (const step of ['ringing', status]) {
    const response = await postEvent(webhook, { callId, from, status: step });
    assert.equal(response.status, 200, `${step}: ${await response.text()}`);
  }
  return callId;
}

/** Waits until a polled condition returns a truthy value, and returns it. */
async function eventually(what, probe, timeout = 30_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

test('an ended call asks for its result; it is accepted once, and a second answer hears it was already recorded', async () => {
  const strings = await archiveStrings('en');
  const mine = await configured({}, (page) => page.check(setting('call_quality_rating')));
  // The same manager with a second tab open: both get the call, both ask.
  const other = await openWidget(browser, { account: mine.account });
  await streamOpen(other.stream);
  const from = '+5511955550001';
  const callId = await endedCall(mine.webhook, { from });

  const shown = mine.page.locator(modal(callId));
  await shown.waitFor({ state: 'visible', timeout: STEP_MS });
  await other.page.locator(modal(callId)).waitFor({ state: 'visible', timeout: STEP_MS });
  // The client's number, formatted as the popup shows it once the caller was described ((11) 95555-0001).
  const number = (await shown.locator('.kvoip-result__number').textContent()).trim();
  assert.ok(number === from || number === '(11) 95555-0001', number);
  assert.equal(await shown.locator('select[name=call_status]').inputValue(), '4', 'an ended call starts as successful');
  const outcomes = await shown.locator('select[name=call_status] option').allTextContents();
  assert.deepEqual([...outcomes].sort(), [1, 2, 3, 4, 5, 6, 7].map((n) => strings.result[`outcome_${n}`]).sort());
  assert.equal(await shown.locator('.kvoip-stars__star').count(), 5, 'the rating the account asks for');
  assert.ok(!(await shown.locator('input[name="follow_up.text"]').isVisible()), 'the task inputs wait for the checkbox');

  await shown.locator('select[name=call_status]').selectOption('2');
  await shown.locator('textarea[name=note]').fill('Wants the premium plan; call back on Monday.');
  await shown.locator('.kvoip-stars__star[data-value="4"]').click();
  assert.equal(await shown.locator('.kvoip-stars__star--on').count(), 4);
  await screenshot(mine.page, 'call-result.png');
  await shown.locator('.kvoip-result__save').click();
  await shown.waitFor({ state: 'detached', timeout: STEP_MS });

  const late = other.page.locator(modal(callId));
  await late.locator('.kvoip-result__save').click();
  const status = late.locator('.kvoip-status');
  await status.filter({ hasText: strings.result.already_recorded }).waitFor({ timeout: STEP_MS });
  assert.ok(!(await late.locator('.kvoip-result__save').isVisible()), 'nothing more to save');
  assert.equal((await late.locator('.kvoip-result__skip').textContent()).trim(), strings.result.close);
  await screenshot(other.page, 'call-result-already-recorded.png');
  await late.locator('.kvoip-result__skip').click();
  await late.waitFor({ state: 'detached', timeout: STEP_MS });

  const again = await serverRequest(mine.page, 'POST', `/widget/v1/calls/${encodeURIComponent(callId)}/result`,
    { call_status: 4 });
  assert.equal(again.status, 409);
  assert.equal(again.body.error.code, 'result_exists');
  assert.deepEqual([...mine.errors, ...other.errors], []);
  await mine.context.close();
  await other.context.close();
});

test('with the call-result modal turned off, an ended call asks nothing', async () => {
  const { page, context, errors, webhook } = await configured({}, (p) => p.uncheck(setting('call_feedback_modal')));
  const callId = await endedCall(webhook, { status: 'missed' });
  // The card says the widget decided, from the account's settings, not to ask.
  await page.locator(`.kvoip-popup[data-call-id="${callId}"][data-call-result="off"]`)
    .waitFor({ state: 'attached', timeout: STEP_MS });
  assert.equal(await page.locator('.kvoip-result').count(), 0);
  assert.deepEqual(errors, []);
  await context.close();
});

test('a follow-up task needs its text here and a sensible time at the server', async () => {
  const strings = await archiveStrings('en');
  const { page, context, errors, webhook } = await configured();
  const callId = await endedCall(webhook, { status: 'missed' });
  const shown = page.locator(modal(callId));
  await shown.waitFor({ state: 'visible', timeout: STEP_MS });
  assert.equal(await shown.locator('select[name=call_status]').inputValue(), '6', 'a missed call did not get through');
  assert.equal(await shown.locator('.kvoip-stars').count(), 0, 'no rating unless the account asks for one');
  // The host page is a lead card (#1): the modal offers it, unticked.
  const card = shown.locator('input[name=entity]');
  assert.equal(await card.isChecked(), false);
  assert.ok((await shown.textContent()).includes(strings.result.link_lead.replace('#ID#', '#1')));

  await shown.locator('input[name=follow_up]').check();
  await shown.locator('.kvoip-result__save').click();
  const textError = shown.locator('.kvoip-field__error[data-field="follow_up.text"]');
  await textError.waitFor({ state: 'visible', timeout: STEP_MS });
  assert.equal((await textError.textContent()).trim(), strings.errors.required);

  await shown.locator('input[name="follow_up.text"]').fill('Call back about the quote');
  const defaultDue = await shown.locator('input[name="follow_up.due_at"]').inputValue();
  assert.match(defaultDue, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$/, 'a due time is proposed');
  const past = new Date(Date.now() - 3 * 24 * 3600 * 1000);
  const local = (d) => new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  await shown.locator('input[name="follow_up.due_at"]').fill(local(past));
  await shown.locator('.kvoip-result__save').click();
  const dueError = shown.locator('.kvoip-field__error[data-field="follow_up.due_at"]');
  await dueError.waitFor({ state: 'visible', timeout: STEP_MS });
  assert.equal((await dueError.textContent()).trim(), strings.result.invalid_due);
  assert.equal(await textError.count(), 0, 'the fixed text is no longer refused');
  await screenshot(page, 'call-result-errors.png');

  await shown.locator('input[name="follow_up.due_at"]').fill(defaultDue);
  await shown.locator('.kvoip-result__save').click();
  await shown.waitFor({ state: 'detached', timeout: STEP_MS });
  assert.deepEqual(errors, []);
  await context.close();
});

test('the failed-deliveries section says in one line that there are none', async () => {
  const strings = await archiveStrings('en');
  const { page, context, errors } = await configured();
  await openSettings(page);
  await waitForForm(page);
  const section = page.locator('.kvoip-settings .kvoip-section--deliveries');
  await section.locator('.kvoip-deliveries__empty').waitFor({ state: 'visible', timeout: STEP_MS });
  assert.equal((await section.locator('.kvoip-deliveries__empty').textContent()).trim(), strings.deliveries.empty);
  assert.equal(await section.locator('.kvoip-delivery').count(), 0);
  assert.deepEqual(errors, []);
  await context.close();
});

test('a call Kommo refuses is listed as a failed delivery, and Retry delivers it', async () => {
  const strings = await archiveStrings('en');
  const { page, context, errors, webhook, account } = await configured({}, (p) => p.uncheck(setting('call_feedback_modal')));
  // Kommo refuses every write of this account as invalid: the server gives up at once (a dead letter).
  const fault = await fetch(`${SANDBOX_URL}/sandbox/kommo/faults`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ account_id: account, status: 400, count: 1000, method: 'POST', path_prefix: '/api/v4/' }),
  });
  assert.equal(fault.status, 200, await fault.text());
  let callId;
  let dead;
  try {
    callId = await endedCall(webhook, { status: 'missed', prefix: 'refused' });
    dead = await eventually('the refused call becomes a failed delivery', async () => {
      const listed = await serverGet(page, '/widget/v1/deliveries/failed');
      return listed.status === 200 && listed.body.find((delivery) => delivery.call_id === callId);
    });
  } finally {
    await fetch(`${SANDBOX_URL}/sandbox/kommo/faults`, { method: 'DELETE' });
  }

  await openSettings(page);
  await waitForForm(page);
  const section = page.locator('.kvoip-settings .kvoip-section--deliveries');
  const row = section.locator(`.kvoip-delivery[data-call-id="${callId}"]`);
  await row.waitFor({ state: 'visible', timeout: STEP_MS });
  assert.equal((await row.locator('.kvoip-delivery__call').textContent()).trim(), callId);
  assert.equal((await row.locator('.kvoip-delivery__attempts').textContent()).trim(),
    strings.deliveries.attempts.replace('#COUNT#', String(dead.attempts)));
  assert.notEqual((await row.locator('.kvoip-delivery__error').textContent()).trim(), '');
  assert.notEqual((await row.locator('.kvoip-delivery__time').textContent()).trim(), '');
  await partScreenshot(section, 'settings-failed-deliveries.png');

  await row.locator('.kvoip-delivery__retry').click();
  await section.locator('.kvoip-deliveries__outcome', { hasText: strings.deliveries.retry_queued })
    .waitFor({ state: 'visible', timeout: STEP_MS });
  await row.waitFor({ state: 'detached', timeout: STEP_MS });
  await section.locator('.kvoip-deliveries__empty').waitFor({ state: 'visible', timeout: STEP_MS });
  await partScreenshot(section, 'settings-failed-deliveries-retried.png');
  // Delivered this time: Kommo took a write for the account, and the call does not come back to the list.
  await eventually('Kommo receives the retried call', async () => {
    const writes = await (await fetch(`${SANDBOX_URL}/sandbox/kommo/writes?account_id=${account}`)).json();
    return writes.some((write) => write.status < 300);
  });
  const listed = await serverGet(page, '/widget/v1/deliveries/failed');
  assert.deepEqual(listed.body.filter((delivery) => delivery.call_id === callId), []);
  assert.deepEqual(errors, []);
  await context.close();
});
