//! The settings flow against the real server: refusals with visible reasons, a valid save, every option read back.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, test } from 'node:test';

import {
  PROVIDER, SERVER_URL, archiveStrings, fieldError, fillOAuth2, fillProvider, launch, modalScreenshot, openSettings,
  openWidget, partScreenshot, save, serverGet, shownSecret, userOptions, waitForForm, webhookUrl,
} from './support.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const input = (name) => `.kvoip-settings [name="${name}"]`;

/** A loopback port nothing listens on. */
function closedPort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Saves and expects onSave true; when it is false, says what the form shows (the modal stays open then). */
async function saveValid(page) {
  if (await save(page)) return;
  assert.fail(`onSave resolved false; the form says: ${await page.textContent('.modal .kvoip-settings')}`);
}

async function openForm(options) {
  const opened = await openWidget(browser, options);
  await openSettings(opened.page);
  await waitForForm(opened.page);
  return opened;
}

test('onSave is false and every refused field says why under its input', async () => {
  const { page, context, errors } = await openForm();
  const strings = await archiveStrings('en');
  const users = await userOptions(page, 'extensions.fallback_user_id');
  await page.click('.kvoip-add-extension');
  await page.click('.kvoip-add-extension');
  await page.fill(input('extensions.entries[0].extension'), '101');
  await page.selectOption(input('extensions.entries[0].user_id'), users[0]);
  await page.fill(input('extensions.entries[1].extension'), '101');
  await page.fill(input('call_handling.placement.pipeline_id'), '5');
  assert.equal(await save(page), false);
  const expected = {
    'credentials.provider_url': strings.errors.required,
    'credentials.login': strings.errors.required,
    'credentials.password': strings.errors.required,
    'call_handling.placement.status_id': strings.errors.incomplete,
    'extensions.entries[1].extension': strings.errors.duplicate,
    'extensions.entries[1].user_id': strings.errors.required,
  };
  for (const [field, text] of Object.entries(expected)) assert.equal(await fieldError(page, field), text, field);
  assert.equal((await page.textContent('.kvoip-settings .kvoip-status')).trim(), strings.settings.fix_fields);
  assert.ok(await page.$('.modal .kvoip-settings'), 'the modal stays open after a refused save');
  await modalScreenshot(page, 'settings-errors.png');
  assert.deepEqual(errors, []);
  await context.close();
});

test('the provider refuses a wrong password: onSave is false with the reason under the password', async () => {
  const { page, context, errors } = await openForm();
  await fillProvider(page, { password: 'not-the-password' });
  assert.equal(await save(page), false);
  const strings = await archiveStrings('en');
  assert.equal(await fieldError(page, 'credentials.password'), strings.errors.credentials_refused);
  assert.deepEqual(errors, []);
  await context.close();
});

test('an OAuth 2.0 client is refused with a wrong secret, then saved and read back without its secret', async () => {
  const { page, context, errors } = await openForm();
  const strings = await archiveStrings('en');
  await fillOAuth2(page, { secret: 'not-the-client-secret' });
  assert.ok(!(await page.isVisible(input('credentials.login'))), 'the login belongs to another method');
  assert.equal(await save(page), false);
  assert.equal(await fieldError(page, 'credentials.client_secret'), strings.errors.credentials_refused);

  await fillOAuth2(page);
  await saveValid(page);
  const stored = await serverGet(page, '/widget/v1/settings');
  assert.deepEqual(stored.body.credentials, {
    method: 'oauth2', provider_url: PROVIDER.url, client_id: PROVIDER.clientId, has_client_secret: true,
  });

  await openSettings(page);
  await waitForForm(page);
  await page.waitForFunction((selector) => document.querySelector(selector)?.checked,
    `${input('credentials.method')}[value=oauth2]`);
  assert.equal(await page.inputValue(input('credentials.client_id')), PROVIDER.clientId);
  assert.equal(await page.inputValue(input('credentials.provider_url')), PROVIDER.url);
  assert.equal(await page.inputValue(input('credentials.client_secret')), '', 'the client secret never comes back');
  const provider = page.locator('.kvoip-settings .kvoip-section--provider');
  assert.ok((await provider.textContent()).includes(strings.settings.client_secret_saved));
  await partScreenshot(provider, 'settings-provider-oauth2.png');
  assert.deepEqual(errors, []);
  await context.close();
});

test('an unreachable provider and a forbidden address are refused at the address', async () => {
  const { page, context, errors } = await openForm();
  const strings = await archiveStrings('en');
  await fillProvider(page, { url: `http://127.0.0.1:${await closedPort()}/voip` });
  assert.equal(await save(page), false);
  assert.equal(await fieldError(page, 'credentials.provider_url'), strings.errors.unreachable);

  await fillProvider(page, { url: 'https://169.254.169.254/' });
  assert.equal(await save(page), false);
  await page.locator('.kvoip-field__error[data-field="credentials.provider_url"]',
    { hasText: strings.errors.forbidden_address }).waitFor({ state: 'visible' });
  assert.deepEqual(errors, []);
  await context.close();
});

test('"Check connection" names the provider account, or says why not', async () => {
  const { page, context, errors } = await openForm();
  const strings = await archiveStrings('en');
  await fillProvider(page, { password: 'wrong' });
  await page.click('.kvoip-check-connection');
  assert.equal(await fieldError(page, 'credentials.password'), strings.errors.credentials_refused);
  await fillProvider(page);
  await page.click('.kvoip-check-connection');
  const ok = page.locator('.kvoip-check-result--ok');
  await ok.waitFor({ state: 'visible' });
  const prefix = strings.settings.check_ok.split('#NAME#')[0];
  assert.ok((await ok.textContent()).startsWith(prefix), await ok.textContent());
  assert.equal(await page.$('.kvoip-field__error[data-field="credentials.password"]'), null);
  assert.deepEqual(errors, []);
  await context.close();
});

test('turning the widget off is stored as off without validating the form', async () => {
  const { page, context, errors } = await openForm();
  assert.equal(await save(page, { active: false }), true);
  const stored = await serverGet(page, '/widget/v1/settings');
  assert.equal(stored.status, 200, JSON.stringify(stored.body));
  assert.equal(stored.body.active, false);
  assert.deepEqual(errors, []);
  await context.close();
});

test('every section is saved and comes back from the server; the signing secret shows when an admin asks', async () => {
  const { page, context, errors, account } = await openForm();
  const users = await userOptions(page, 'extensions.fallback_user_id');
  assert.ok(users.length >= 2, `the account has active users: ${users}`);
  await fillProvider(page);
  for (const [name, on] of [['call_handling.widget.ringing_sound', false],
    ['call_handling.widget.call_feedback_modal', false], ['call_handling.widget.auto_open_card', true],
    ['call_handling.widget.call_quality_rating', true],
    ['call_handling.known_incoming.create_lead_when_no_active_lead', true],
    ['call_handling.known_incoming.note_number_when_several', false],
    ['call_handling.missed.link_to_lead', false], ['call_handling.outgoing_new.create_contact_and_lead', false]]) {
    await page.setChecked(input(name), on);
  }
  await page.check(`${input('call_handling.unknown_incoming.unsorted_accept')}[value=on_answer]`);
  await page.check(`${input('call_handling.unknown_incoming.create')}[value=contact_and_lead]`);
  await page.fill(input('call_handling.missed.due_in_minutes'), '15');
  await page.check(`${input('call_handling.missed.responsible.kind')}[value=user]`);
  await page.selectOption(input('call_handling.missed.responsible.user_id'), users[1]);
  await page.fill(input('call_handling.placement.pipeline_id'), '4001');
  await page.fill(input('call_handling.placement.status_id'), '142');
  await page.click('.kvoip-add-extension');
  await page.click('.kvoip-add-extension');
  await page.click('.kvoip-add-extension');
  await page.fill(input('extensions.entries[0].extension'), '101');
  await page.selectOption(input('extensions.entries[0].user_id'), users[0]);
  await page.fill(input('extensions.entries[1].extension'), '999');
  await page.fill(input('extensions.entries[2].extension'), '102');
  await page.selectOption(input('extensions.entries[2].user_id'), users[1]);
  await page.click('.kvoip-extension:has([name="extensions.entries[1].extension"]) .kvoip-remove-extension');
  await page.selectOption(input('extensions.fallback_user_id'), users[0]);
  await saveValid(page);

  // Reopened on the same page: the modal closed with the save's answer, so the secret shows only when asked for.
  await openSettings(page);
  await waitForForm(page);
  await page.waitForSelector('code.kvoip-webhook-secret');
  assert.equal(await page.$('input.kvoip-webhook-secret'), null, 'the secret is not on the page until asked for');
  const issued = await shownSecret(page);
  assert.match(issued, /^whsec_/);
  const secret = page.locator('input.kvoip-webhook-secret');
  await page.click('.kvoip-rotate-secret');
  await page.waitForFunction((old) => {
    const shown = document.querySelector('input.kvoip-webhook-secret');
    return shown && shown.value.startsWith('whsec_') && shown.value !== old;
  }, issued);
  const rotated = await secret.inputValue();
  await page.click('.modal .sandbox-modal__cancel');
  await context.close();

  // A new page load: what the form shows can only come from the server.
  const reloaded = await openForm({ account });
  const p = reloaded.page;
  await p.waitForFunction(() => document.querySelector('.kvoip-settings [name="credentials.login"]')?.value === 'agent');
  assert.equal(await p.inputValue(input('credentials.provider_url')), PROVIDER.url);
  assert.equal(await p.inputValue(input('credentials.password')), '', 'the password never comes back');
  const expectChecked = {
    'call_handling.widget.ringing_sound': false, 'call_handling.widget.call_feedback_modal': false,
    'call_handling.widget.auto_open_card': true, 'call_handling.widget.call_quality_rating': true,
    'call_handling.known_incoming.create_lead_when_no_active_lead': true,
    'call_handling.known_incoming.note_number_when_several': false, 'call_handling.missed.create_task': true,
    'call_handling.missed.link_to_lead': false, 'call_handling.outgoing_new.create_contact_and_lead': false,
    [`call_handling.unknown_incoming.create"][value="contact_and_lead`]: true,
    [`call_handling.unknown_incoming.unsorted_accept"][value="on_answer`]: true,
    [`call_handling.missed.responsible.kind"][value="user`]: true,
  };
  for (const [name, checked] of Object.entries(expectChecked)) assert.equal(await p.isChecked(input(name)), checked, name);
  await userOptions(p, 'extensions.fallback_user_id');
  const values = {
    'call_handling.missed.due_in_minutes': '15', 'call_handling.missed.responsible.user_id': users[1],
    'call_handling.placement.pipeline_id': '4001', 'call_handling.placement.status_id': '142',
    'extensions.entries[0].extension': '101', 'extensions.entries[0].user_id': users[0],
    'extensions.entries[1].extension': '102', 'extensions.entries[1].user_id': users[1],
    'extensions.fallback_user_id': users[0],
  };
  for (const [name, value] of Object.entries(values)) assert.equal(await p.inputValue(input(name)), value, name);
  assert.equal(await p.$(input('extensions.entries[2].extension')), null, 'the removed row stays removed');
  assert.match(await webhookUrl(p), new RegExp(`^${SERVER_URL.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/hooks/voip/[^/]+$`));
  const hint = (await p.textContent('.kvoip-webhook-secret')).trim();
  assert.equal(await p.$('input.kvoip-webhook-secret'), null, 'the secret is not shown again after a reload');
  assert.ok(hint.startsWith('…') && rotated.endsWith(hint.slice(1)), `hint ${hint} of ${rotated}`);
  assert.deepEqual([...errors, ...reloaded.errors], []);
  await reloaded.context.close();
});

test('settings saved by one account are not shown to another account', async () => {
  const mine = await openForm();
  await fillProvider(mine.page);
  assert.equal(await save(mine.page), true);

  const other = await openForm();
  assert.equal(await other.page.inputValue(input('credentials.login')), '');
  assert.equal(await other.page.$('.kvoip-webhook-url'), null, 'no webhook URL before the first save');
  assert.deepEqual([...mine.errors, ...other.errors], []);
  await mine.context.close();
  await other.context.close();
});

test('call lists: the defaults show, a pause out of range is refused, a change is saved and read back', async () => {
  const { page, context, errors, account } = await openForm();
  const strings = await archiveStrings('en');
  const enabled = input('call_handling.call_lists.enabled');
  const interval = input('call_handling.call_lists.interval_secs');
  const source = (name) => `${input('call_handling.call_lists.sources')}[value=${name}]`;
  const section = page.locator('.kvoip-settings .kvoip-section--call-lists');
  assert.equal((await section.locator('.kvoip-section__title').textContent()).trim(), strings.settings.section_call_lists);
  assert.ok((await section.textContent()).includes(strings.settings.call_lists_enabled));
  const hint = (await section.locator('.kvoip-field__hint').textContent()).trim();
  assert.equal(hint, strings.settings.call_lists_interval_hint.replace('#MIN#', '3').replace('#MAX#', '600'));
  assert.equal(await page.isChecked(enabled), true);
  assert.equal(await page.inputValue(interval), '10');
  for (const name of ['contacts', 'companies', 'leads']) {
    assert.equal(await page.isChecked(source(name)), true, name);
    assert.equal(await page.isEnabled(source(name)), true, name);
  }
  await partScreenshot(section, 'settings-call-lists.png');

  // Off, the lists do not apply: greyed out, ticks kept.
  await page.uncheck(enabled);
  for (const name of ['contacts', 'companies', 'leads']) assert.equal(await page.isDisabled(source(name)), true, name);
  await partScreenshot(section, 'settings-call-lists-off.png');
  await page.check(enabled);
  assert.equal(await page.isEnabled(source('leads')), true);

  await fillProvider(page);
  for (const typed of ['2', '601']) {
    await page.fill(interval, typed);
    assert.equal(await save(page), false, typed);
    assert.equal(await fieldError(page, 'call_handling.call_lists.interval_secs'), strings.errors.out_of_range, typed);
  }
  assert.ok(await section.locator('.kvoip-field--invalid').count() > 0, 'the refused input is marked');
  await partScreenshot(section, 'settings-call-lists-refused.png');
  const nothing = await serverGet(page, '/widget/v1/settings');
  assert.equal(nothing.status, 200, JSON.stringify(nothing.body));
  assert.equal(nothing.body.webhook, null, 'nothing was stored');
  assert.equal(nothing.body.call_handling.call_lists.interval_secs, 10);

  await page.fill(interval, '20');
  await page.uncheck(source('leads'));
  await saveValid(page);
  const stored = await serverGet(page, '/widget/v1/settings');
  assert.deepEqual(stored.body.call_handling.call_lists,
    { enabled: true, interval_secs: 20, sources: ['contacts', 'companies'] });

  // Reopened on the same page, then on a new page load: both show what the server keeps.
  await openSettings(page);
  await waitForForm(page);
  assert.equal(await page.inputValue(interval), '20');
  assert.equal(await page.isChecked(source('leads')), false);
  await context.close();
  const reloaded = await openForm({ account });
  const p = reloaded.page;
  await p.waitForFunction(() => document.querySelector('.kvoip-settings [name="credentials.login"]')?.value === 'agent');
  assert.equal(await p.isChecked(enabled), true);
  assert.equal(await p.inputValue(interval), '20');
  const ticked = {};
  for (const name of ['contacts', 'companies', 'leads']) ticked[name] = await p.isChecked(source(name));
  assert.deepEqual(ticked, { contacts: true, companies: true, leads: false });
  assert.deepEqual([...errors, ...reloaded.errors], []);
  await reloaded.context.close();
});

test('the telephony system: the available ones are offered, Asterisk is checked and saved as such, its instructions show after the save and it reads back', async () => {
  const { page, context, errors, account } = await openForm();
  const strings = await archiveStrings('en');
  const system = (name) => `${input('system')}[value=${name}]`;
  const provider = page.locator('.kvoip-settings .kvoip-section--provider');
  const systems = ['standard', 'asterisk', 'zadarma', 'yeastar', 'twilio'];
  assert.deepEqual(await page.$$eval(input('system'), (radios) => radios.map((radio) => radio.value)), systems,
    'the systems this server has adapters for');
  const labels = await provider.locator('.kvoip-system .kvoip-check__text').allTextContents();
  assert.deepEqual(labels.map((label) => label.trim()), systems.map((name) => strings.settings[`system_${name}`]));
  assert.equal(await page.isChecked(system('standard')), true, 'our contract by default');
  assert.equal(await page.isVisible(`${input('credentials.method')}[value=oauth2]`), true, 'our contract takes any method');
  await partScreenshot(provider, 'settings-system.png');

  await page.check(system('asterisk'));
  await provider.locator('.kvoip-credentials-hint', { hasText: strings.settings.asterisk_credentials_hint })
    .waitFor({ state: 'visible' });
  assert.ok((await provider.textContent()).includes(strings.settings.asterisk_provider_url_hint));
  await fillProvider(page);
  const checked = [];
  page.on('request', (request) => {
    if (request.url().includes('/widget/v1/settings/check')) checked.push(new URL(request.url()).search);
  });
  await page.click('.kvoip-check-connection');
  await page.locator('.kvoip-check-result--ok').waitFor({ state: 'visible' });
  assert.deepEqual(checked, ['?system=asterisk'], '"Check connection" names the system');
  await partScreenshot(provider, 'settings-system-asterisk.png');

  await saveValid(page);
  const stored = await serverGet(page, '/widget/v1/settings');
  assert.equal(stored.body.system, 'asterisk', JSON.stringify(stored.body));

  // Reopened after the save: what to paste where, for the connector, next to the URL and the secret.
  const guideShows = async (p) => {
    await p.waitForFunction((selector) => document.querySelector(selector)?.checked, system('asterisk'));
    const guide = p.locator('.kvoip-settings .kvoip-section--webhook .kvoip-guide[data-system=asterisk]');
    await guide.waitFor({ state: 'visible' });
    const steps = (await guide.locator('li').allTextContents()).map((step) => step.trim());
    assert.deepEqual(steps, [strings.settings.guide_asterisk_env, strings.settings.guide_asterisk_provider_url]);
    assert.ok(steps[0].includes('CONNECTOR_WEBHOOK_URL') && steps[0].includes('CONNECTOR_WEBHOOK_SECRET'), steps[0]);
    assert.equal(await p.isVisible('.kvoip-settings .kvoip-reveal-secret'), true, 'the connector takes our signing secret');
  };
  await openSettings(page);
  await waitForForm(page);
  await guideShows(page);
  await page.click('.kvoip-reveal-secret');
  await page.waitForSelector('input.kvoip-webhook-secret');
  await partScreenshot(page.locator('.kvoip-settings .kvoip-section--webhook'), 'settings-system-asterisk-webhook.png');
  await page.click('.modal .sandbox-modal__cancel');
  await context.close();

  // A new page load: the choice and the instructions come from the server.
  const reloaded = await openForm({ account });
  await guideShows(reloaded.page);
  assert.equal(await reloaded.page.isChecked(system('standard')), false);
  assert.deepEqual([...errors, ...reloaded.errors], []);
  await reloaded.context.close();
});

test('the system choice and its instructions are in Spanish and Portuguese too', async () => {
  for (const lang of ['es', 'pt']) {
    const { page, context, errors } = await openForm({ lang });
    const strings = await archiveStrings(lang);
    const provider = page.locator('.kvoip-settings .kvoip-section--provider');
    const labels = await provider.locator('.kvoip-system .kvoip-check__text').allTextContents();
    assert.deepEqual(labels.map((label) => label.trim()),
      ['standard', 'asterisk', 'zadarma', 'yeastar', 'twilio'].map((name) => strings.settings[`system_${name}`]), lang);
    await page.check(`${input('system')}[value=asterisk]`);
    await fillProvider(page);
    await saveValid(page);
    await openSettings(page);
    await waitForForm(page);
    const guide = page.locator('.kvoip-settings .kvoip-guide[data-system=asterisk]');
    await guide.waitFor({ state: 'visible' });
    assert.equal((await guide.locator('li').first().textContent()).trim(), strings.settings.guide_asterisk_env, lang);
    await partScreenshot(page.locator('.kvoip-settings .kvoip-section--webhook'), `settings-system-asterisk-${lang}.png`);
    assert.deepEqual(errors, [], lang);
    await context.close();
  }
});
