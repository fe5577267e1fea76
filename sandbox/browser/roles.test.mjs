//! Kommo roles: a user who is not an account administrator sees no settings, only whom to ask; an admin sees
//! the webhook's signing secret again after Kommo closed the modal on the first save.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  SANDBOX_URL, SERVER_URL, STEP_MS, archiveStrings, configure, fillProvider, launch, modalScreenshot, openSettings,
  openWidget, partScreenshot, postEvent, save, serverRequest, shownSecret, streamOpen, waitForForm, webhookUrl,
} from './support.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** The stand-in's default users of an account (sandbox/src/kommo_api/ledger.rs `default_users`). */
const maria = (account) => account * 100 + 1; // pt, not an administrator
const juan = (account) => account * 100 + 2; // es, not an administrator

/** Every request the page sends to our server, as `METHOD /path`. */
function serverRequests(page) {
  const seen = [];
  page.on('request', (request) => {
    if (request.url().startsWith(SERVER_URL)) seen.push(`${request.method()} ${new URL(request.url()).pathname}`);
  });
  return seen;
}

/** An account an admin configured: its webhook URL and signing secret exist, so a non-admin could be shown them. */
async function configuredAccount() {
  const admin = await openWidget(browser);
  const webhook = await configure(admin.page);
  await admin.context.close();
  return { account: admin.account, webhook };
}

async function kommoRequests() {
  return (await (await fetch(`${SANDBOX_URL}/sandbox/kommo/stats`)).json()).requests;
}

for (const [who, lang, userOf, claim] of [
  ['Maria (is_admin claim false)', 'pt', maria, 'false'],
  ['Juan (no is_admin claim: the server asks Kommo)', 'es', juan, 'omit'],
]) {
  test(`${who} is told in ${lang} that an administrator configures the integration, and sees no settings`, async () => {
    const { account, webhook } = await configuredAccount();
    const user = userOf(account);
    const strings = await archiveStrings(lang);
    // No ?lang: the page speaks the user's language, as Kommo does.
    const { page, context, errors } = await openWidget(browser, { account, user: String(user), is_admin_claim: claim });
    const sent = serverRequests(page);
    await openSettings(page);
    const notice = page.locator('.modal .kvoip-settings .kvoip-admin-only');
    await notice.waitFor({ state: 'visible', timeout: STEP_MS });
    assert.equal((await notice.textContent()).trim(), strings.settings.admin_only);

    const modal = await page.textContent('.modal .kvoip-settings');
    assert.ok(!modal.includes(webhook.secret.slice(-6)), 'no part of the signing secret');
    assert.equal(await page.$$eval('.modal .kvoip-settings :is(input, select, textarea, button)', (all) => all.length),
      0, 'no form');
    for (const hidden of ['.kvoip-webhook-url', '.kvoip-webhook-secret', '.kvoip-section--deliveries', '.kvoip-section']) {
      assert.equal(await page.$(`.modal ${hidden}`), null, `no ${hidden}`);
    }
    const html = await page.content();
    assert.ok(!html.includes(webhook.url) && !html.includes(webhook.secret), 'neither the webhook URL nor the secret');
    assert.deepEqual(sent.filter((request) => /\/(users|deliveries)/.test(request)), [],
      'the users and the failed deliveries are not even asked for');

    // Kommo's Save: resolves false, and nothing reaches the server.
    const before = sent.length;
    assert.equal(await save(page), false);
    assert.deepEqual(sent.slice(before).filter((request) => request.startsWith('PUT')), []);
    assert.ok(await page.$('.modal .kvoip-admin-only'), 'the notice stays');
    if (claim === 'omit') {
      const asked = (await kommoRequests())[`GET /api/v4/users/${user}`] ?? 0;
      assert.ok(asked >= 1, 'without the claim the server asked Kommo who the user is');
    }
    await modalScreenshot(page, `roles-non-admin-${lang}.png`);
    assert.deepEqual(errors, []);
    await context.close();
  });
}

test('an admin whose token carries no is_admin claim still gets the settings form', async () => {
  const { page, context, errors } = await openWidget(browser, { is_admin_claim: 'omit' });
  await openSettings(page);
  await waitForForm(page);
  assert.equal(await page.$('.modal .kvoip-admin-only'), null);
  assert.deepEqual(errors, []);
  await context.close();
});

test('an admin whose modal closed on the first save shows the signing secret again, copies it and hides it', async () => {
  const { page, context, errors } = await openWidget(browser);
  const strings = await archiveStrings('en');
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: SANDBOX_URL });
  await openSettings(page);
  await waitForForm(page);
  await fillProvider(page);
  assert.equal(await save(page), true);
  assert.equal(await page.$('.modal'), null, 'the local Kommo closed the modal after the save');

  await openSettings(page);
  await waitForForm(page);
  const hint = page.locator('code.kvoip-webhook-secret');
  await hint.waitFor({ state: 'visible', timeout: STEP_MS });
  const tail = (await hint.textContent()).trim().replace(/^…/, '');
  assert.equal(await page.$('input.kvoip-webhook-secret'), null, 'only the last characters until asked for');
  const reveal = page.locator('.kvoip-reveal-secret');
  assert.equal((await reveal.textContent()).trim(), strings.settings.reveal_secret);

  const secret = await shownSecret(page);
  assert.match(secret, /^whsec_/);
  assert.ok(tail.length >= 4 && secret.endsWith(tail), `${secret} ends with the hint ${tail}`);
  const url = await webhookUrl(page);
  assert.match(url, new RegExp(`^${SERVER_URL.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/hooks/voip/[^/]+$`));
  // The secret shown is the one the server checks signatures with.
  const delivered = await postEvent({ url, secret }, { callId: `reveal-${Date.now()}`, from: '+5511944440000',
    status: 'ringing' });
  assert.equal(delivered.status, 200, await delivered.text());
  await partScreenshot(page.locator('.modal .kvoip-section--webhook'), 'roles-revealed-secret.png');

  await page.click('.kvoip-copy-secret');
  await page.waitForFunction((expected) => navigator.clipboard.readText().then((text) => text === expected), secret,
    { timeout: STEP_MS });
  assert.equal(await page.$eval('input.kvoip-webhook-secret', (input) => input.value.slice(input.selectionStart,
    input.selectionEnd)), secret, 'what was copied is shown selected');

  await page.click('.kvoip-hide-secret');
  await hint.waitFor({ state: 'visible', timeout: STEP_MS });
  assert.equal(await page.$('input.kvoip-webhook-secret'), null);
  assert.ok(!(await page.textContent('.modal .kvoip-settings')).includes(secret.slice(0, 12)), 'hidden again');
  assert.deepEqual(errors, []);
  await context.close();
});

test('with the modal kept open, the first save shows the signing secret at once', async () => {
  const { page, context, errors } = await openWidget(browser, { keep_modal: '1' });
  await openSettings(page);
  await waitForForm(page);
  await fillProvider(page);
  const sent = serverRequests(page);
  assert.equal(await save(page), true);
  assert.ok(await page.$('.modal .kvoip-settings'), 'the modal stayed open');
  const shown = page.locator('input.kvoip-webhook-secret');
  await shown.waitFor({ state: 'visible', timeout: STEP_MS });
  const secret = await shown.inputValue();
  assert.match(secret, /^whsec_/);
  assert.ok(!sent.some((request) => request.endsWith('/webhook/reveal')), 'from the save\'s own answer');
  const delivered = await postEvent({ url: await webhookUrl(page), secret },
    { callId: `kept-${Date.now()}`, from: '+5511944441111', status: 'ringing' });
  assert.equal(delivered.status, 200, await delivered.text());
  assert.deepEqual(errors, []);
  await context.close();
});

test('a manager who is not an administrator is asked for the result of her own call, and it is recorded', async () => {
  const strings = await archiveStrings('pt');
  const admin = await openWidget(browser);
  const user = maria(admin.account);
  const webhook = await configure(admin.page, async (page) => {
    await page.click('.kvoip-add-extension');
    await page.fill('.kvoip-settings [name="extensions.entries[0].extension"]', '101');
    await page.selectOption('.kvoip-settings [name="extensions.entries[0].user_id"]', String(user));
  });
  await admin.context.close();

  const manager = await openWidget(browser, { account: admin.account, user: String(user), is_admin_claim: 'false' });
  await streamOpen(manager.stream);
  const callId = `maria-${Date.now()}`;
  for (const status of ['ringing', 'ended']) {
    const response = await postEvent(webhook, { callId, from: '+5511955557777', status, extension: '101' });
    assert.equal(response.status, 200, `${status}: ${await response.text()}`);
  }
  // The settings are the admins', but whether to ask is every user's: Maria gets the modal.
  const shown = manager.page.locator(`.kvoip-result[data-call-id="${callId}"]`);
  await shown.waitFor({ state: 'visible', timeout: STEP_MS });
  assert.equal((await shown.locator('select[name=call_status] option[value="4"]').textContent()).trim(),
    strings.result.outcome_4, 'in her language');
  await shown.locator('textarea[name=note]').fill('Cliente quer o plano anual.');
  await shown.locator('.kvoip-result__save').click();
  await shown.waitFor({ state: 'detached', timeout: STEP_MS });
  const again = await serverRequest(manager.page, 'POST', `/widget/v1/calls/${encodeURIComponent(callId)}/result`,
    { call_status: 4 });
  assert.equal(again.body.error.code, 'result_exists', 'her result was the one recorded');
  assert.deepEqual(manager.errors, []);
  await manager.context.close();
});
