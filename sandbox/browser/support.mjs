//! Shared pieces of the browser tests: Debian's Chromium through playwright-core, the local Kommo's page, waits.
import assert from 'node:assert/strict';
import { createHmac, randomInt, randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

import { chromium } from 'playwright-core';

export const SANDBOX_URL = (process.env.SANDBOX_URL || 'http://127.0.0.1:8090').replace(/\/+$/, '');
export const SERVER_URL = (process.env.SERVER_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const OUTPUT_DIR = path.resolve(process.env.TEST_OUTPUT_DIR || 'test-output');

/** How long a step may take before a test fails (the first wasm compile on 2 cores included). */
export const STEP_MS = 20_000;

async function healthy(url) {
  try {
    return (await fetch(url)).ok;
  } catch {
    return false;
  }
}

/**
 * Chromium as the tests run it: the system browser, never a download, never reaching the internet.
 * Refuses first, with a plain message, when the server or the local Kommo is not answering.
 */
export async function launch() {
  for (const [name, url] of [['server (SERVER_URL)', `${SERVER_URL}/health`],
    ['local Kommo (SANDBOX_URL)', `${SANDBOX_URL}/sandbox/health`]]) {
    if (!(await healthy(url))) throw new Error(`the ${name} does not answer at ${url}; run \`cargo xtask test\``);
  }
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run'],
  });
}

/** A Kommo account id the server has never seen, so each test starts from a fresh install. */
export function freshAccount() {
  return randomInt(100_000_000, 2_000_000_000);
}

/** The strings the archive ships for a language (the same file Kommo's `self.i18n` reads). */
export async function archiveStrings(lang) {
  const response = await fetch(`${SANDBOX_URL}/widget/i18n/${lang}.json`);
  if (!response.ok) throw new Error(`i18n/${lang}.json: HTTP ${response.status}`);
  return response.json();
}

/**
 * Opens the host page with the widget loaded. `options` become the page's query (lang, block_wasm, csp);
 * the page acts as a fresh account unless `account` is given.
 * Returns {page, context, errors, account, stream}: `errors` collects uncaught page errors, `stream.open`
 * turns true once the widget's push stream is connected.
 */
export async function openWidget(browser, options = {}) {
  const account = options.account ?? freshAccount();
  const query = new URLSearchParams({ ...options, account: String(account) });
  const context = await browser.newContext({ viewport: { width: 1280, height: 820 } });
  const page = await context.newPage();
  const errors = [];
  const stream = { open: false };
  page.on('pageerror', (error) => errors.push(String(error)));
  page.on('response', (response) => {
    if (response.url().includes('/widget/v1/push/events')) stream.open = response.status() === 200;
  });
  await page.goto(`${SANDBOX_URL}/?${query}`);
  await page.waitForFunction(() => window.__sandbox && (window.__sandbox.ready || window.__sandbox.loadError),
    null, { timeout: STEP_MS });
  const loadError = await page.evaluate(() => window.__sandbox.loadError);
  if (loadError) throw new Error(`script.js did not load: ${loadError}`);
  return { page, context, errors, account, stream };
}

/** Clicks the page's Settings button; resolves once the widget's settings root is in the modal. */
export async function openSettings(page) {
  await page.click('#sandbox-open-settings');
  await page.waitForSelector('.modal .modal-body .kvoip-settings', { timeout: STEP_MS });
}

/**
 * Waits for the settings form itself and for the current settings to have arrived: the form shows its
 * inputs while loading and then overwrites them with what the server has, so typing earlier is lost.
 */
export async function waitForForm(page) {
  // The provider address shows whichever sign-in method is chosen (the login is hidden for the others).
  await page.waitForSelector('.kvoip-settings input[name="credentials.provider_url"]', { timeout: STEP_MS });
  await page.waitForFunction(() => {
    const status = document.querySelector('.kvoip-settings .kvoip-status');
    const loading = window.__sandbox.widget.langs.settings.loading;
    return status && status.textContent.trim() !== loading;
  }, null, { timeout: STEP_MS });
}

/** Sets the modal's Active checkbox, clicks Save and resolves with what onSave resolved to. */
export async function save(page, { active = true } = {}) {
  await page.setChecked('.modal input[name=sandbox_active]', active);
  const before = await page.evaluate(() => window.__sandbox.saves);
  await page.click('.modal .sandbox-modal__save');
  await page.waitForFunction((seq) => window.__sandbox.lastSave && window.__sandbox.lastSave.seq > seq,
    before, { timeout: STEP_MS });
  const shown = await page.textContent('#sandbox-save-result');
  const result = await page.evaluate(() => window.__sandbox.lastSave.result);
  if (shown !== String(result)) throw new Error(`#sandbox-save-result shows ${shown}, onSave gave ${result}`);
  return result;
}

/** The local Kommo's VoIP provider stand-in and the credentials it accepts (sandbox/src/voip). */
export const PROVIDER = {
  url: `${SANDBOX_URL}/voip`, login: 'agent', password: 'sandbox-voip-password',
  clientId: 'sandbox-client', clientSecret: 'sandbox-client-secret',
};

/** Fills the VoIP provider section (login and password method). */
export async function fillProvider(page, { url = PROVIDER.url, login = PROVIDER.login, password = PROVIDER.password } = {}) {
  await page.check('.kvoip-settings input[name="credentials.method"][value=password]');
  await page.fill('.kvoip-settings input[name="credentials.provider_url"]', url);
  await page.fill('.kvoip-settings input[name="credentials.login"]', login);
  await page.fill('.kvoip-settings input[name="credentials.password"]', password);
}

/** Fills the VoIP provider section with the OAuth 2.0 client method. */
export async function fillOAuth2(page, { url = PROVIDER.url, clientId = PROVIDER.clientId, secret = PROVIDER.clientSecret } = {}) {
  await page.check('.kvoip-settings input[name="credentials.method"][value=oauth2]');
  await page.fill('.kvoip-settings input[name="credentials.provider_url"]', url);
  await page.fill('.kvoip-settings input[name="credentials.client_id"]', clientId);
  await page.fill('.kvoip-settings input[name="credentials.client_secret"]', secret);
}

/** The visible error text under a field (by its JSON path), once it shows. */
export async function fieldError(page, field) {
  const line = page.locator(`.kvoip-settings .kvoip-field__error[data-field="${field}"]`);
  await line.waitFor({ state: 'visible', timeout: STEP_MS });
  return (await line.textContent()).trim();
}

/**
 * Fills and saves valid credentials (after `tweak(page)`, if given, has changed other options); resolves with
 * `{url, secret}`: the webhook URL and the signing secret, as an admin copies them for the provider: from the
 * open modal when it stayed open (`keep_modal`), else from the reopened settings' "Show signing secret".
 * The settings modal stays open.
 */
export async function configure(page, tweak) {
  await openSettings(page);
  await waitForForm(page);
  await fillProvider(page);
  if (tweak) await tweak(page);
  if (!(await save(page))) {
    const said = await page.textContent('.modal .kvoip-settings');
    throw new Error(`saving valid settings resolved false; the form says: ${said}`);
  }
  if (!(await page.$('.modal .kvoip-settings'))) {
    await openSettings(page);
    await waitForForm(page);
  }
  await page.waitForFunction(() => {
    const shown = document.querySelector('.kvoip-webhook-url');
    return shown && (shown.value || shown.textContent || '').trim().startsWith('http');
  }, null, { timeout: STEP_MS });
  return { url: await webhookUrl(page), secret: await shownSecret(page) };
}

/** The signing secret in full: the one shown, else the one "Show signing secret" brings. */
export async function shownSecret(page) {
  if (!(await page.$('input.kvoip-webhook-secret'))) await page.click('.kvoip-settings .kvoip-reveal-secret');
  await page.waitForFunction(() => (document.querySelector('input.kvoip-webhook-secret')?.value || '').startsWith('whsec_'),
    null, { timeout: STEP_MS });
  return page.$eval('input.kvoip-webhook-secret', (shown) => shown.value.trim());
}

/** The Standard Webhooks headers for `body` signed with a `whsec_…` secret, as a VoIP provider sends them. */
export function signedHeaders(secret, body) {
  const id = `msg_${randomUUID().replaceAll('-', '')}`;
  const timestamp = Math.floor(Date.now() / 1000);
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const signature = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64');
  return { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': `v1,${signature}` };
}

/** Posts a provider event (`FromWebhook` JSON) to a webhook URL, signed; resolves with the fetch response. */
export function postEvent({ url, secret }, event) {
  const body = JSON.stringify({ voipAccountId: 'sandbox-voip', to: '+551133330000',
    startTime: Math.floor(Date.now() / 1000), ...event });
  return fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json', ...signedHeaders(secret, body) }, body });
}

/** Waits until the page's push stream is connected (`stream` from openWidget). */
export async function streamOpen(stream) {
  const deadline = Date.now() + STEP_MS;
  while (!stream.open) {
    if (Date.now() > deadline) throw new Error('the widget never opened its push stream');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The webhook URL the widget shows, whether it is an input or text. */
export function webhookUrl(page) {
  return page.$eval('.kvoip-webhook-url', (shown) => (shown.value || shown.textContent || '').trim());
}

export async function screenshot(page, name) {
  mkdirSync(OUTPUT_DIR, { recursive: true });
  const file = path.join(OUTPUT_DIR, name);
  // Entry animations (the popup fades in) finish first, so the picture shows what a user sees.
  await page.waitForFunction(() => document.getAnimations().every((animation) => animation.playState !== 'running'),
    null, { timeout: STEP_MS });
  await page.screenshot({ path: file });
  return file;
}

/** Every element the widget put into the page (class or id with the widget's prefix). */
export function widgetElements(page) {
  return page.evaluate(() => Array.from(document.querySelectorAll('[class*="kvoip-"], [id^="kvoip-"]'))
    .map((element) => element.id ? `#${element.id}` : `.${element.className}`));
}

/** A picture of the whole settings modal, however tall the form is. */
export async function modalScreenshot(page, name) {
  mkdirSync(OUTPUT_DIR, { recursive: true });
  const file = path.join(OUTPUT_DIR, name);
  await page.setViewportSize({ width: 1280, height: 3600 });
  await page.waitForFunction(() => document.getAnimations().every((animation) => animation.playState !== 'running'),
    null, { timeout: STEP_MS });
  await page.locator('.modal .modal-body').screenshot({ path: file });
  return file;
}

/** A picture of one part of the page (a locator), e.g. one section of the settings form. */
export async function partScreenshot(locator, name) {
  mkdirSync(OUTPUT_DIR, { recursive: true });
  const file = path.join(OUTPUT_DIR, name);
  await locator.screenshot({ path: file });
  return file;
}

/** Asks our server, as the page's account, through the host's $authorizedAjax (as the widget does). */
export function serverGet(page, apiPath) {
  return serverRequest(page, 'GET', apiPath);
}

/** Any request to our server as the page's account; resolves with `{status, body}`. */
export function serverRequest(page, method, apiPath, body) {
  return page.evaluate(({ url, method, body }) => new Promise((resolve) => {
    window.__sandbox.widget.$authorizedAjax({ url, type: method, dataType: 'json', contentType: 'application/json',
      data: body === undefined ? undefined : JSON.stringify(body) })
      .then((data, _text, xhr) => resolve({ status: xhr ? xhr.status : 200, body: data }),
        (xhr) => resolve({ status: xhr.status, body: xhr.responseJSON }));
  }), { url: `${SERVER_URL}${apiPath}`, method, body });
}

/** The ids of the users the widget offers in a user select, once the list has loaded. */
export async function userOptions(page, selectName) {
  const select = `.kvoip-settings select[name="${selectName}"]`;
  await page.waitForFunction((selector) => (document.querySelector(selector)?.options.length ?? 0) > 1, select,
    { timeout: STEP_MS });
  return page.$$eval(`${select} option`, (options) => options.map((option) => option.value).filter(Boolean));
}

/**
 * Seeds the page's account in the local Kommo (a contact or a company) and returns what it made, once
 * Kommo's webhooks of the change (if the server subscribed the account) have reached the server: a
 * manager's contact made in Kommo a moment before its caller rings.
 */
export async function seed(kind, body) {
  const response = await fetch(`${SANDBOX_URL}/sandbox/kommo/${kind}`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  const text = await response.text();
  assert.equal(response.status, 200, text);
  const deadline = Date.now() + STEP_MS;
  for (;;) {
    const deliveries = await (await fetch(
      `${SANDBOX_URL}/sandbox/kommo/webhook-deliveries?account_id=${body.account_id}`)).json();
    if (!deliveries.some((delivery) => delivery.state === 'queued')) break;
    assert.ok(Date.now() < deadline, 'Kommo\'s webhooks reached the server');
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return JSON.parse(text);
}
