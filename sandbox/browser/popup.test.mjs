//! The incoming-call popup as a manager sees it: who is calling (from the local Kommo's contacts and
//! companies, through our server), its buttons through Kommo's navigation, the options every user's widget
//! applies (auto-open on answer, the ringing sound), and a reload during a ring.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  SANDBOX_URL, STEP_MS, configure, launch, openSettings, openWidget, partScreenshot, postEvent, screenshot, seed,
  streamOpen, waitForForm,
} from './support.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });


/**
 * A configured page with its push stream open, the widget's attempts to ring counted: the page's Web Audio
 * constructor is wrapped (`window.__rings`), so a test can tell whether the widget rang without speakers.
 * Headless Chromium refuses sound before a user gesture, as browsers do: the widget then stays quiet.
 */
async function ready(tweak, options) {
  const opened = await openWidget(browser, options);
  await opened.page.evaluate(() => {
    window.__rings = 0;
    const Real = window.AudioContext;
    window.AudioContext = function CountingContext() {
      window.__rings += 1;
      return new Real();
    };
  });
  const webhook = await configure(opened.page, tweak);
  await opened.page.click('.modal .sandbox-modal__cancel');
  await streamOpen(opened.stream);
  return { ...opened, webhook };
}

/** The card of `callId` once it shows `known` (`known`, `unknown`, `unavailable`). */
function card(page, callId, known) {
  return page.locator(`.kvoip-popup[data-call-id="${callId}"][data-known="${known}"]`);
}

/** Kommo paths the widget navigated to (the host page plays Kommo's router for `.js-navigate-link`). */
function navigations(page) {
  return page.evaluate(() => window.__sandbox.navigations || []);
}

test('a known contact is named with its company, open lead and responsible, and its card opens in place', async () => {
  const { page, context, errors, account, webhook } = await ready();
  const company = await seed('companies', { account_id: account, name: 'Acme Ltda', phones: ['+551130009999'] });
  const contact = await seed('contacts', {
    account_id: account, name: 'Maria Silva', phones: ['+5511987650001'], company_id: company.company_id,
    leads: [{ name: 'Website redesign', price: 15000 }],
  });
  const callId = `known-${Date.now()}`;
  assert.equal((await postEvent(webhook, { callId, from: '+5511987650001', status: 'ringing' })).status, 200);
  const shown = card(page, callId, 'known');
  await shown.waitFor({ state: 'visible', timeout: STEP_MS });
  assert.equal(await shown.locator('.kvoip-popup__name').textContent(), 'Maria Silva');
  assert.equal(await shown.locator('.kvoip-popup__number').textContent(), '(11) 98765-0001');
  // Our line (sent as +551133330000) as a Brazilian account writes it, like the caller's number.
  await page.waitForFunction((id) => document.querySelector(`.kvoip-popup[data-call-id="${id}"] .kvoip-popup__to`)
    ?.textContent === '(11) 3333-0000', callId, { timeout: STEP_MS });
  assert.equal(await shown.locator('.kvoip-popup__company').textContent(), 'Acme Ltda');
  assert.equal(await shown.locator('.kvoip-popup__lead-name').textContent(), 'Website redesign');
  assert.match(await shown.locator('.kvoip-popup__price').textContent(), /15.?000/);
  assert.ok((await shown.locator('.kvoip-popup__stage').textContent()).length > 0, 'the stage is named');
  assert.ok((await shown.locator('.kvoip-popup__responsible').textContent()).length > 0, 'the responsible is named');
  await screenshot(page, 'popup-known.png');

  // Keyboard: Tab reaches the card's buttons; Enter on "Open contact" opens the card without a reload.
  const before = await page.evaluate(() => performance.timeOrigin);
  await shown.locator('.kvoip-popup__action').focus();
  await page.keyboard.press('Enter');
  await page.waitForFunction((path) => (window.__sandbox.navigations || []).includes(path),
    `/contacts/detail/${contact.contact_id}`, { timeout: STEP_MS });
  assert.equal(await page.evaluate(() => performance.timeOrigin), before, 'no page reload');
  await shown.locator('.kvoip-popup__lead-name').click();
  await page.waitForFunction((path) => (window.__sandbox.navigations || []).includes(path),
    `/leads/detail/${contact.lead_ids[0]}`, { timeout: STEP_MS });
  // Escape closes the focused card.
  await shown.locator('.kvoip-popup__close').focus();
  await page.keyboard.press('Escape');
  await page.locator(`.kvoip-popup[data-call-id="${callId}"]`).waitFor({ state: 'detached', timeout: STEP_MS });
  assert.deepEqual(errors, []);
  await context.close();
});

test('a company number is named as the company, and an unknown number offers to create the contact', async () => {
  const { page, context, errors, account, webhook } = await ready();
  const company = await seed('companies', { account_id: account, name: 'Acme Ltda', phones: ['+551130001000'] });
  const companyCall = `company-${Date.now()}`;
  await postEvent(webhook, { callId: companyCall, from: '+551130001000', status: 'ringing' });
  const byCompany = card(page, companyCall, 'known');
  await byCompany.waitFor({ state: 'visible', timeout: STEP_MS });
  assert.equal(await byCompany.locator('.kvoip-popup__name').textContent(), 'Acme Ltda');
  await byCompany.locator('.kvoip-popup__action').click();
  await page.waitForFunction((path) => (window.__sandbox.navigations || []).includes(path),
    `/companies/detail/${company.company_id}`, { timeout: STEP_MS });

  const unknownCall = `unknown-${Date.now()}`;
  await postEvent(webhook, { callId: unknownCall, from: '+5521988887777', status: 'ringing' });
  const unknown = card(page, unknownCall, 'unknown');
  await unknown.waitFor({ state: 'visible', timeout: STEP_MS });
  assert.equal(await unknown.locator('.kvoip-popup__name').textContent(), '(21) 98888-7777');
  await screenshot(page, 'popup-unknown-and-company.png');
  await unknown.locator('.kvoip-popup__action').click();
  await page.waitForFunction(() => (window.__sandbox.navigations || []).some((path) => path.startsWith('/contacts/add/')),
    null, { timeout: STEP_MS });
  const created = (await navigations(page)).find((path) => path.startsWith('/contacts/add/'));
  assert.equal(created, '/contacts/add/?phone=%2B5521988887777');
  assert.deepEqual(errors, []);
  await context.close();
});

test('a reload during a ring shows the call again, and its answer and end arrive once', async () => {
  const { page, context, errors, stream, account, webhook } = await ready();
  await seed('contacts', { account_id: account, name: 'Ana Costa', phones: ['+5511987650002'] });
  const callId = `reload-${Date.now()}`;
  await postEvent(webhook, { callId, from: '+5511987650002', status: 'ringing' });
  await card(page, callId, 'known').waitFor({ state: 'visible', timeout: STEP_MS });

  stream.open = false;
  await page.reload();
  await page.waitForFunction(() => window.__sandbox && window.__sandbox.ready, null, { timeout: STEP_MS });
  const again = card(page, callId, 'known');
  await again.waitFor({ state: 'visible', timeout: STEP_MS });
  assert.equal(await again.locator('.kvoip-popup__name').textContent(), 'Ana Costa');
  await streamOpen(stream);
  await postEvent(webhook, { callId, from: '+5511987650002', status: 'answered' });
  await page.locator(`.kvoip-popup--answered[data-call-id="${callId}"]`).waitFor({ state: 'visible', timeout: STEP_MS });
  assert.equal(await page.locator('.kvoip-popup').count(), 1, 'one card per call');
  assert.deepEqual(errors, []);
  await context.close();
});

test('with auto-open on, answering opens the caller\'s card by itself; the ringing sound follows its setting', async () => {
  const withOptions = async (page) => {
    await page.check('.kvoip-settings input[name="call_handling.widget.auto_open_card"]');
    await page.check('.kvoip-settings input[name="call_handling.widget.ringing_sound"]');
  };
  const { page, context, errors, account, webhook } = await ready(withOptions);
  const contact = await seed('contacts', { account_id: account, name: 'Rui Lima', phones: ['+5511987650003'] });
  const callId = `auto-${Date.now()}`;
  await postEvent(webhook, { callId, from: '+5511987650003', status: 'ringing' });
  await card(page, callId, 'known').waitFor({ state: 'visible', timeout: STEP_MS });
  await page.waitForFunction(() => window.__rings > 0, null, { timeout: STEP_MS });
  assert.deepEqual(await navigations(page), [], 'nothing opens while it rings');
  await postEvent(webhook, { callId, from: '+5511987650003', status: 'answered' });
  await page.waitForFunction((path) => (window.__sandbox.navigations || []).includes(path),
    `/contacts/detail/${contact.contact_id}`, { timeout: STEP_MS });
  assert.deepEqual(errors, []);
  await context.close();

  // The sound off: a ringing call makes no sound.
  const quiet = await ready(async (page) => {
    await page.uncheck('.kvoip-settings input[name="call_handling.widget.ringing_sound"]');
  });
  const quietCall = `quiet-${Date.now()}`;
  await postEvent(quiet.webhook, { callId: quietCall, from: '+5521900000001', status: 'ringing' });
  await quiet.page.locator(`.kvoip-popup[data-call-id="${quietCall}"]`).waitFor({ state: 'visible', timeout: STEP_MS });
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal(await quiet.page.evaluate(() => window.__rings), 0);
  await quiet.context.close();
});

/** What the local Kommo received on `POST /api/v2/events` (Kommo's own call notification) for `account`. */
async function serverNotifications(account) {
  const response = await fetch(`${SANDBOX_URL}/sandbox/kommo/notifications?account_id=${account}`);
  assert.equal(response.status, 200);
  return response.json();
}

/** From now on the page's context gets 404 for every .wasm, as in a browser whose wasm cannot load. */
async function blockWasm(context) {
  await context.addCookies([{ name: 'sandbox_block_wasm', value: '1', url: SANDBOX_URL }]);
}

test('where the wasm cannot run, a ringing call shows once through Kommo\'s own notification', async () => {
  const { page, context, errors, account, webhook } = await ready();
  await blockWasm(context);
  const callId = `no-wasm-${Date.now()}`;
  assert.equal((await postEvent(webhook, { callId, from: '+5511987650009', status: 'ringing' })).status, 200);
  await page.waitForFunction(() => window.__sandbox.kommoCalls.length > 0, null, { timeout: STEP_MS });
  await page.locator('.sandbox-kommo-call').waitFor({ state: 'visible', timeout: STEP_MS });
  await screenshot(page, 'kommo-notification-fallback.png');
  for (const status of ['answered', 'ended']) {
    assert.equal((await postEvent(webhook, { callId, from: '+5511987650009', status })).status, 200);
  }
  // A call answered before its notification went out gets none.
  const quick = `no-wasm-quick-${Date.now()}`;
  for (const status of ['ringing', 'answered']) {
    assert.equal((await postEvent(webhook, { callId: quick, from: '+5511987650013', status })).status, 200);
  }
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const shown = await page.evaluate(() => window.__sandbox.kommoCalls);
  assert.equal(shown.length, 1, 'once for the call, not once per event');
  const [notice] = shown;
  assert.equal(notice.from, '+5511987650009');
  assert.equal(notice.header, 'Incoming call');
  assert.ok(Number.isInteger(notice.date) && Math.abs(notice.date - Date.now() / 1000) < 60, 'date is in seconds');
  assert.match(notice.text, /contacts\/add\/\?phone=%2B5511987650009/, 'an unknown number offers to create the contact');
  assert.equal(await page.locator('.kvoip-popup').count(), 0, 'no popup of ours');

  // A known caller is named, and a name is text, never markup (Kommo shows the notice as HTML).
  const contact = await seed('contacts', {
    account_id: account, name: '<img src=x onerror="window.__xss=1">Eve', phones: ['+5511987650012'],
  });
  const known = `no-wasm-known-${Date.now()}`;
  assert.equal((await postEvent(webhook, { callId: known, from: '+5511987650012', status: 'ringing' })).status, 200);
  await page.waitForFunction(() => window.__sandbox.kommoCalls.length > 1, null, { timeout: STEP_MS });
  const named = (await page.evaluate(() => window.__sandbox.kommoCalls))[1];
  assert.deepEqual(named.element, { id: contact.contact_id, type: 'contact' });
  assert.match(named.text, /^&lt;img src=x onerror="window.__xss=1"&gt;Eve · /);
  assert.equal(await page.evaluate(() => window.__xss), undefined, 'no script ran');
  assert.deepEqual(await serverNotifications(account), [], 'the server sent no notification of its own');
  assert.deepEqual(errors, []);
  await context.close();
});

test('with Kommo\'s notification chosen, the server sends it and a browser without wasm adds none', async () => {
  const { page, context, errors, account, webhook } = await ready(async (page) => {
    await page.check('.kvoip-settings input[name="call_handling.widget.kommo_notification"]');
  });
  await blockWasm(context);
  const callId = `server-notice-${Date.now()}`;
  assert.equal((await postEvent(webhook, { callId, from: '+5511987650010', status: 'ringing' })).status, 200);
  const deadline = Date.now() + STEP_MS;
  let sent = [];
  while (sent.length === 0 && Date.now() < deadline) {
    sent = await serverNotifications(account);
    if (sent.length === 0) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.equal(sent.length, 1, 'the server sent Kommo\'s notification once');
  assert.equal(sent[0].phone_number, '+5511987650010');
  // The widget asked for the options and chose not to add a second notification.
  await page.waitForFunction(() => performance.getEntriesByType('resource')
    .some((entry) => entry.name.includes('/widget/v1/calls/options')), null, { timeout: STEP_MS });
  await new Promise((resolve) => setTimeout(resolve, 1000));
  assert.deepEqual(await page.evaluate(() => window.__sandbox.kommoCalls), [], 'never both for one call');
  assert.deepEqual(errors, []);
  await context.close();
});

test('calls on an extension nobody has pop up for the users of the group the admin ticked', async () => {
  const groups = '.kvoip-settings .kvoip-unmapped-groups';
  const { page, context, errors, webhook } = await ready(async (form) => {
    await form.check('.kvoip-settings input[name="call_handling.unmapped_calls.to"][value="groups"]');
    // The local Kommo's users are in two groups: Sales (the admin, who opened this page, and Maria)
    // and Support (Juan).
    const sales = form.locator(`${groups} input[name="call_handling.unmapped_calls.group_ids"][value="0"]`);
    await sales.waitFor({ state: 'visible', timeout: STEP_MS });
    assert.equal(await form.locator(`${groups} input`).count(), 2, 'one checkbox per group');
    await sales.check();
    await partScreenshot(form.locator(groups).locator('xpath=..'), 'settings-unmapped-groups.png');
  });
  // Read back: the choice and the group are what the server stored.
  await openSettings(page);
  await waitForForm(page);
  assert.ok(await page.isChecked('.kvoip-settings input[name="call_handling.unmapped_calls.to"][value="groups"]'));
  assert.ok(await page.isChecked(`${groups} input[value="0"]`));
  assert.ok(!(await page.isChecked(`${groups} input:not([value="0"])`)));
  await page.click('.modal .sandbox-modal__cancel');

  const callId = `group-${Date.now()}`;
  assert.equal((await postEvent(webhook, { callId, from: '+5511987650011', status: 'ringing' })).status, 200);
  await page.locator(`.kvoip-popup[data-call-id="${callId}"]`).waitFor({ state: 'visible', timeout: STEP_MS });
  assert.deepEqual(errors, []);
  await context.close();
});

test('a push stream that drops reconnects and resumes: an event sent meanwhile arrives, once', async () => {
  const { page, context, errors, stream, webhook } = await ready();
  // Every EventSource the page opens, and every call event its streams deliver.
  await context.addInitScript(() => {
    window.__sources = [];
    window.__heard = [];
    const Real = window.EventSource;
    window.EventSource = function (url) {
      const source = new Real(url);
      window.__sources.push(source);
      source.addEventListener('call', (event) => window.__heard.push(event.data));
      return source;
    };
    window.EventSource.prototype = Real.prototype;
  });
  stream.open = false;
  await page.reload();
  await page.waitForFunction(() => window.__sandbox && window.__sandbox.ready, null, { timeout: STEP_MS });
  await streamOpen(stream);
  const callId = `reconnect-${Date.now()}`;
  const from = '+5511987650014';
  assert.equal((await postEvent(webhook, { callId, from, status: 'ringing' })).status, 200);
  await page.locator(`.kvoip-popup--ringing[data-call-id="${callId}"]`).waitFor({ state: 'visible', timeout: STEP_MS });

  // The stream drops (as when a proxy or the network cuts it); the answer is sent before the page is back.
  stream.open = false;
  await page.evaluate(() => {
    const source = window.__sources[window.__sources.length - 1];
    source.close();
    source.onerror(new Event('error'));
  });
  assert.equal((await postEvent(webhook, { callId, from, status: 'answered' })).status, 200);
  await page.locator(`.kvoip-popup--answered[data-call-id="${callId}"]`).waitFor({ state: 'visible', timeout: STEP_MS });
  await streamOpen(stream);
  assert.ok(await page.evaluate(() => window.__sources.length) >= 2, 'the page opened a new stream');
  assert.equal((await postEvent(webhook, { callId, from, status: 'ended' })).status, 200);
  await page.locator(`.kvoip-popup--ended[data-call-id="${callId}"]`).waitFor({ state: 'visible', timeout: STEP_MS });
  const heard = (await page.evaluate(() => window.__heard)).map((data) => JSON.parse(data))
    .filter((call) => call.call_id === callId && call.event_id).map((call) => call.status);
  assert.deepEqual(heard, ['ringing', 'answered', 'ended'], 'each event of the call arrived once, in order');
  assert.equal(await page.locator('.kvoip-popup').count(), 1, 'one card for the call');
  assert.deepEqual(errors, []);
  await context.close();
});
