//! Calling out from Kommo: click-to-call (a number clicked in a list places one call, however often it is
//! clicked, and each refusal reads as one sentence) and call lists (made from a list's selection through "More",
//! dialled one after the other by the panel, paused, skipped, reported), against the VoIP provider stand-in.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  SANDBOX_URL, STEP_MS, archiveStrings, configure, launch, openWidget, screenshot, serverRequest, streamOpen,
} from './support.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

async function sandbox(method, path, body) {
  const response = await fetch(`${SANDBOX_URL}${path}`, {
    method, headers: { 'Content-Type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/**
 * A page whose settings map extension 101 to its user (unless `extension` is false), with call lists every
 * `interval` seconds; the provider stand-in plays the calls it places into the server's webhook, quickly.
 */
async function ready({ extension = true, interval = 3, playback = {}, lang } = {}) {
  const opened = await openWidget(browser, lang ? { lang } : {});
  const { page } = opened;
  const user = await page.evaluate(() => window.APP.constant('user').id);
  await configure(page, async (form) => {
    if (extension) {
      await form.click('.kvoip-add-extension');
      await form.fill('.kvoip-settings [name="extensions.entries[0].extension"]', '101');
      await form.selectOption('.kvoip-settings [name="extensions.entries[0].user_id"]', String(user));
    }
    await form.fill('.kvoip-settings [name="call_handling.call_lists.interval_secs"]', String(interval));
  });
  await page.click('.modal .sandbox-modal__cancel');
  await page.waitForFunction(() => window.__sandbox.providerWebhook, null, { timeout: STEP_MS });
  const provider = await page.evaluate(() => window.__sandbox.providerWebhook.account_id);
  await sandbox('PUT', `/sandbox/voip/accounts/${encodeURIComponent(provider)}/playback`,
    { answer_after_ms: 300, talk_ms: 1200, no_answer_after_ms: 800, ...playback });
  await streamOpen(opened.stream);
  return { ...opened, user, provider };
}

/** Seeds contacts in the page's account (in order) and shows Kommo's contacts list with them. */
async function contacts(page, account, people) {
  const made = [];
  for (const person of people) {
    made.push((await sandbox('POST', '/sandbox/kommo/contacts', { account_id: account, ...person })).contact_id);
  }
  await page.evaluate(() => window.__sandbox.showView('contacts'));
  return made;
}

/** The provider's originate requests for a number's digits. */
async function originated(digits) {
  const stats = await sandbox('GET', '/sandbox/voip/stats');
  return (stats.originate_requests || []).filter((request) => (request.to || '').replace(/\D/g, '').endsWith(digits));
}

function messages(page) {
  return page.evaluate(() => window.__sandbox.kommoMessages);
}

async function message(page, count) {
  await page.waitForFunction((n) => window.__sandbox.kommoMessages.length >= n, count, { timeout: STEP_MS });
  return (await messages(page))[count - 1];
}

test('a number clicked twice places one call and Kommo says whose phone rings first', async () => {
  const strings = await archiveStrings('en');
  const { page, context, errors, account } = await ready({ playback: { manual: true } });
  await contacts(page, account, [{ name: 'Maria Silva', phones: ['+5511987650101'] }]);
  const link = page.locator('a.sandbox-phone[data-action="phone"]').first();
  await link.waitFor({ state: 'visible', timeout: STEP_MS });
  const before = (await originated('987650101')).length;
  await link.dblclick();
  const shown = await message(page, 1);
  assert.equal(shown.kind, 'message');
  assert.match(shown.header, /^Calling .*98765-0101/);
  assert.equal(shown.text, strings.dialer.calling_text.replace('#EXTENSION#', '101'));
  // A third click within the hold places nothing either, and says nothing.
  await link.click();
  await page.waitForTimeout(500);
  assert.equal((await originated('987650101')).length - before, 1, 'one call placed');
  assert.equal((await messages(page)).length, 1);
  assert.deepEqual(errors, []);
  await context.close();
});

test('a user without an extension is told to ask the admin, in her language', async () => {
  const strings = await archiveStrings('es');
  const { page, context, errors, account } = await ready({ extension: false, lang: 'es' });
  await contacts(page, account, [{ name: 'Maria Silva', phones: ['+5511987650102'] }]);
  await page.locator('a.sandbox-phone[data-action="phone"]').first().click();
  const shown = await message(page, 1);
  assert.deepEqual([shown.kind, shown.header, shown.text],
    ['error', strings.dialer.call_failed, strings.dialer.no_extension]);
  assert.deepEqual(errors, []);
  await context.close();
});

test('a provider that refuses or cannot be reached, and an integration turned off, each say so in Kommo', async () => {
  const strings = await archiveStrings('en');
  const { page, context, errors, account } = await ready();
  await contacts(page, account, [{ name: 'Maria Silva', phones: ['+5511987650103'] }]);
  const link = page.locator('a.sandbox-phone[data-action="phone"]').first();
  await link.waitFor({ state: 'visible', timeout: STEP_MS });
  const cases = [
    [{ status: 404 }, 'provider_refused'],
    [{ status: 503 }, 'provider_unreachable'],
  ];
  let count = 0;
  for (const [fault, code] of cases) {
    await sandbox('POST', '/sandbox/voip/faults', fault);
    await link.click();
    count += 1;
    const shown = await message(page, count);
    assert.deepEqual([shown.kind, shown.header, shown.text], ['error', strings.dialer.call_failed, strings.dialer[code]],
      code);
  }
  // Turned off in the settings: the provider is not asked.
  const before = (await originated('987650103')).length;
  const settings = (await serverRequest(page, 'GET', '/widget/v1/settings')).body;
  const off = await serverRequest(page, 'PUT', '/widget/v1/settings', {
    active: false,
    credentials: { method: 'password', provider_url: settings.credentials.provider_url, login: settings.credentials.login },
    call_handling: settings.call_handling, extensions: settings.extensions,
  });
  assert.equal(off.status, 200, JSON.stringify(off.body));
  await link.click();
  count += 1;
  const shown = await message(page, count);
  assert.deepEqual([shown.kind, shown.text], ['error', strings.dialer.integration_off]);
  assert.equal((await originated('987650103')).length, before, 'nothing placed while off');
  await screenshot(page, 'dialer-refused.png');
  assert.deepEqual(errors, []);
  await context.close();
});

/** Selects the contacts list's rows of `ids` and picks the widget in "More". */
async function makeList(page, ids) {
  for (const id of ids) await page.check(`tr[data-id="${id}"] input.sandbox-list__checkbox`);
  await page.click('#sandbox-list-more');
  await page.click('#sandbox-list-widget-action');
}

function panel(page) {
  return page.locator('.kvoip-dialer .kvoip-dialer__panel');
}

async function state(page, wanted) {
  await page.waitForFunction((want) => document.querySelector('.kvoip-dialer .kvoip-dialer__panel')
    ?.getAttribute('data-state') === want, wanted, { timeout: STEP_MS * 2 });
}

test('a call list from the contacts list is dialled one by one, paused, skipped, and reported', async () => {
  const strings = await archiveStrings('en');
  const { page, context, errors, account } = await ready({ playback: { unanswered_numbers: ['+5511987650203'] } });
  const ids = await contacts(page, account, [
    { name: 'Ana Souza', phones: ['+5511987650201'] },
    { name: 'Bruno Lima' },
    { name: 'Carla Dias', phones: ['+5511987650203'] },
    { name: 'Davi Rocha', phones: ['+5511987650204'] },
    { name: 'Eva Nunes', phones: ['+5511987650205'] },
  ]);
  await makeList(page, ids);
  await state(page, 'ready');
  const shown = panel(page);
  assert.equal(await shown.locator('.kvoip-dialer__progress').getAttribute('data-total'), '5');
  assert.equal(await shown.locator('.kvoip-dialer__next .kvoip-dialer__name').textContent(), 'Ana Souza');
  await screenshot(page, 'dialer-ready.png');

  await shown.locator('button.kvoip-dialer__start').click();
  // Ana: dialled at once, answered, over; the account asks for results, so the list waits for hers.
  await page.locator('.kvoip-dialer__current[data-state="calling"]').waitFor({ timeout: STEP_MS });
  await screenshot(page, 'dialer-calling.png');
  const form = page.locator('.kvoip-result');
  await form.waitFor({ state: 'visible', timeout: STEP_MS });
  await page.locator('.kvoip-dialer__wait[data-wait="call_result"]').waitFor({ timeout: STEP_MS });
  // Her result sent, the panel reads the list again at once, not at its next five-second look.
  const reads = [];
  page.on('request', (request) => {
    if (request.url().endsWith('/widget/v1/call-lists/current')) reads.push(Date.now());
  });
  const saved = page.waitForResponse((response) => /\/widget\/v1\/calls\/[^/]+\/result$/.test(response.url()));
  await form.locator('.kvoip-result__save').click();
  await saved;
  const savedAt = Date.now();
  await form.waitFor({ state: 'detached', timeout: STEP_MS });
  await page.locator('.kvoip-dialer__wait[data-wait="interval"]').waitFor({ timeout: STEP_MS });
  assert.ok(reads.some((at) => at >= savedAt - 50 && at - savedAt < 1500), 'read again after the result');
  // Bruno has no number: the list passes him by; Carla never answers (her result is not waited for).
  await page.locator('.kvoip-dialer__current .kvoip-dialer__name:text("Carla Dias")').waitFor({ timeout: STEP_MS * 2 });
  await page.locator('.kvoip-dialer__current[data-state="not_answered"]').waitFor({ timeout: STEP_MS });
  await page.locator('.kvoip-dialer__wait[data-wait="interval"]').waitFor({ timeout: STEP_MS });
  // Paused over her result form, which is then skipped.
  await shown.locator('button.kvoip-dialer__pause').click();
  await state(page, 'paused');
  await form.locator('.kvoip-result__skip').click();
  // Skip Davi, then resume: Eva is the last one called.
  assert.equal(await shown.locator('.kvoip-dialer__next .kvoip-dialer__name').textContent(), 'Davi Rocha');
  await shown.locator('button.kvoip-dialer__skip').click();
  await page.waitForFunction(() => document.querySelector('.kvoip-dialer__next .kvoip-dialer__name')
    ?.textContent === 'Eva Nunes', null, { timeout: STEP_MS });
  // A reload in the middle: the page finds the list where it stood, paused, Eva next.
  await page.reload();
  await state(page, 'paused');
  assert.equal(await shown.locator('.kvoip-dialer__next .kvoip-dialer__name').textContent(), 'Eva Nunes');
  assert.equal(await shown.locator('.kvoip-dialer__progress').getAttribute('data-left'), '1');
  // Another user of the account sees no list and cannot read this one.
  const other = await openWidget(browser, { account, user: String(account * 100 + 1), is_admin_claim: 'false' });
  await other.page.waitForTimeout(1500);
  assert.equal(await other.page.$('.kvoip-dialer .kvoip-dialer__panel'), null, 'no dialer for another user');
  const theirs = await serverRequest(other.page, 'GET', '/widget/v1/call-lists/current');
  assert.deepEqual([theirs.status, theirs.body.list], [200, null]);
  const listId = await shown.getAttribute('data-list-id');
  const touched = await serverRequest(other.page, 'POST', `/widget/v1/call-lists/${listId}/command`,
    { action: 'stop', next: 4 });
  assert.equal(touched.status, 404, 'another user\'s list is not found');
  assert.deepEqual(other.errors, []);
  await other.context.close();
  await shown.locator('button.kvoip-dialer__resume').click();
  await form.waitFor({ state: 'visible', timeout: STEP_MS * 2 });
  await form.locator('textarea[name=note]').fill('Wants a call back next week.');
  await form.locator('.kvoip-result__save').click();
  await state(page, 'finished');
  await screenshot(page, 'dialer-report.png');

  const rows = await page.$$eval('.kvoip-dialer__report .kvoip-dialer__row', (items) => items.map((item) => [
    item.querySelector('.kvoip-dialer__name').textContent, item.getAttribute('data-state'),
    item.querySelector('.kvoip-dialer__outcome').textContent]));
  assert.deepEqual(rows.map(([name, entry]) => [name, entry]), [
    ['Ana Souza', 'answered'], ['Bruno Lima', 'no_number'], ['Carla Dias', 'not_answered'], ['Davi Rocha', 'skipped'],
    ['Eva Nunes', 'answered'],
  ]);
  assert.match(rows[0][2], /^Answered 0:0[12]$/);
  assert.equal(rows[1][2], strings.dialer.entry_no_number);
  // Each number was dialled once, Davi's never.
  for (const [digits, times] of [['987650201', 1], ['987650203', 1], ['987650204', 0], ['987650205', 1]]) {
    assert.equal((await originated(digits)).length, times, digits);
  }
  // Each call is logged in Kommo once: Ana's, Carla's and Eva's.
  const expected = (await serverRequest(page, 'GET', '/widget/v1/call-lists/current')).body.list.entries
    .map((entry) => entry.call_id).filter(Boolean).sort();
  assert.equal(expected.length, 3);
  let logged = [];
  for (let attempt = 0; attempt < 100; attempt += 1) {
    const writes = await sandbox('GET', `/sandbox/kommo/writes?account_id=${account}`);
    logged = writes.filter((write) => write.path === '/api/v4/calls' && write.committed)
      .flatMap((write) => write.body.map((item) => item.uniq)).sort();
    if (logged.length >= 3) break;
    await page.waitForTimeout(100);
  }
  assert.deepEqual(logged, expected, 'each call logged once');
  await shown.locator('button.kvoip-dialer__close').click();
  await panel(page).waitFor({ state: 'detached', timeout: STEP_MS });
  assert.deepEqual(errors, []);
  await context.close();
});

test('a list still open shows again after a reload, and a stopped one reports what was not called', async () => {
  const { page, context, errors, account } = await ready({ playback: { manual: true } });
  const ids = await contacts(page, account, [
    { name: 'Ana Souza', phones: ['+5511987650301'] }, { name: 'Bruno Lima', phones: ['+5511987650302'] },
  ]);
  await makeList(page, ids);
  await state(page, 'ready');
  await page.reload();
  await state(page, 'ready');
  assert.equal(await panel(page).locator('.kvoip-dialer__next .kvoip-dialer__name').textContent(), 'Ana Souza');
  await panel(page).locator('button.kvoip-dialer__stop').click();
  await state(page, 'stopped');
  const rows = await page.$$eval('.kvoip-dialer__row', (items) => items.map((item) => item.getAttribute('data-state')));
  assert.deepEqual(rows, ['pending', 'pending']);
  const current = await serverRequest(page, 'GET', '/widget/v1/call-lists/current');
  assert.equal(current.body.list.state, 'stopped');
  assert.deepEqual(errors, []);
  await context.close();
});

test('more entries than a call list takes are refused before anything is sent', async () => {
  const strings = await archiveStrings('en');
  const { page, context, errors } = await ready();
  const result = await page.evaluate(() => {
    const widget = window.__sandbox.widget;
    const real = widget.list_selected;
    widget.list_selected = () => ({ selected: Array.from({ length: 251 }, (_, i) => ({ id: String(i + 1), type: 'contact' })) });
    try {
      return widget.callbacks.contacts.selected();
    } finally {
      widget.list_selected = real;
    }
  });
  assert.equal(result, true);
  const shown = await message(page, 1);
  assert.deepEqual([shown.kind, shown.text],
    ['error', strings.dialer.too_many.replace('#MAX#', '250').replace('#COUNT#', '251')]);
  assert.equal(await page.$('.kvoip-dialer .kvoip-dialer__panel'), null);
  assert.deepEqual(errors, []);
  await context.close();
});
