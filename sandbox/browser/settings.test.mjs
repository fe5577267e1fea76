//! The settings flow against the real server: refusals with visible reasons, a valid save, and reading it back.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  SERVER_URL, archiveStrings, launch, openSettings, openWidget, save, screenshot, waitForForm, webhookUrl,
} from './support.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('onSave is false and the fields show errors when the login is empty', async () => {
  const { page, context, errors } = await openWidget(browser);
  await openSettings(page);
  await waitForForm(page);
  assert.equal(await save(page), false);
  const loginError = page.locator('.kvoip-field__error[data-field=voip_login]');
  await loginError.waitFor({ state: 'visible' });
  const strings = await archiveStrings('en');
  assert.equal((await loginError.textContent()).trim(), strings.errors.required);
  assert.ok(await page.$('.modal .kvoip-settings'), 'the modal stays open after a refused save');
  await screenshot(page, 'settings-errors.png');
  assert.deepEqual(errors, []);
  await context.close();
});

test('onSave is false and says not_active when Active is unchecked', async () => {
  const { page, context, errors } = await openWidget(browser);
  await openSettings(page);
  await waitForForm(page);
  await page.fill('.kvoip-settings input[name=voip_login]', 'agent-7');
  await page.fill('.kvoip-settings input[name=voip_password]', 'pw-123456');
  assert.equal(await save(page, { active: false }), false);
  const strings = await archiveStrings('en');
  await page.locator('.modal .kvoip-settings', { hasText: strings.errors.not_active }).waitFor({ state: 'visible' });
  assert.deepEqual(errors, []);
  await context.close();
});

test('onSave is true for a valid login and password and the reopened modal shows them from the server', async () => {
  const { page, context, errors, account } = await openWidget(browser);
  await openSettings(page);
  await waitForForm(page);
  await page.fill('.kvoip-settings input[name=voip_login]', 'agent-42');
  await page.fill('.kvoip-settings input[name=voip_password]', 'correct-horse');
  assert.equal(await save(page), true);
  assert.equal(await page.$('.modal'), null, 'Kommo closes the modal after a successful save');

  // A new page load: what the form shows can only come from the server.
  await context.close();
  const reloaded = await openWidget(browser, { account });
  await openSettings(reloaded.page);
  await reloaded.page.waitForFunction(
    () => document.querySelector('.kvoip-settings input[name=voip_login]')?.value === 'agent-42', null,
    { timeout: 20_000 });
  await reloaded.page.waitForSelector('.kvoip-webhook-url', { timeout: 20_000 });
  const url = await webhookUrl(reloaded.page);
  assert.match(url, new RegExp(`^${SERVER_URL.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/hooks/voip/[^/]+$`));
  assert.equal(await reloaded.page.inputValue('.kvoip-settings input[name=voip_password]'), '',
    'the password never comes back');
  assert.deepEqual([...errors, ...reloaded.errors], []);
  await reloaded.context.close();
});

test('settings saved by one account are not shown to another account', async () => {
  const mine = await openWidget(browser);
  await openSettings(mine.page);
  await waitForForm(mine.page);
  await mine.page.fill('.kvoip-settings input[name=voip_login]', 'agent-private');
  await mine.page.fill('.kvoip-settings input[name=voip_password]', 'private-pass');
  assert.equal(await save(mine.page), true);

  const other = await openWidget(browser);
  await openSettings(other.page);
  await waitForForm(other.page);
  assert.equal(await other.page.inputValue('.kvoip-settings input[name=voip_login]'), '');
  assert.equal(await other.page.$('.kvoip-webhook-url'), null, 'no webhook URL before the first save');
  assert.deepEqual([...mine.errors, ...other.errors], []);
  await mine.context.close();
  await other.context.close();
});
