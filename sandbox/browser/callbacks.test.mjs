//! The widget inside the local Kommo: Kommo's callback order, the settings modal, and a clean destroy.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  SERVER_URL, STEP_MS, configure, launch, openSettings, openWidget, postEvent, widgetElements,
} from './support.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('the callbacks run in Kommo order through RequireJS and render, init and bind_actions return true', async () => {
  const { page, context, errors } = await openWidget(browser);
  const recorded = await page.evaluate(() => ({
    calls: window.__sandbox.calls,
    results: window.__sandbox.results,
    thrown: window.__sandbox.thrown,
    // RequireJS defined the module from the archive's script.js (not a script tag of ours).
    viaRequire: Object.keys(window.requirejs.s.contexts._.defined).some((name) => name.includes('/widget/script.js')),
  }));
  assert.deepEqual(recorded.calls, ['render', 'init', 'bind_actions']);
  assert.deepEqual(recorded.results, { render: true, init: true, bind_actions: true });
  assert.deepEqual(recorded.thrown, []);
  assert.ok(recorded.viaRequire, 'script.js is an AMD module loaded by RequireJS');
  await page.waitForSelector('link#kvoip-style', { state: 'attached', timeout: STEP_MS });
  assert.deepEqual(errors, []);
  await context.close();
});

test('the settings UI mounts into the modal body', async () => {
  const { page, context, errors } = await openWidget(browser);
  await openSettings(page);
  await page.waitForSelector('.modal .modal-body .kvoip-settings input[name="credentials.login"]', { timeout: STEP_MS });
  const calls = await page.evaluate(() => window.__sandbox.calls);
  assert.deepEqual(calls, ['render', 'init', 'bind_actions', 'settings']);
  const modalWidth = await page.$eval('.modal .modal-body', (body) => body.getBoundingClientRect().width);
  assert.equal(Math.round(modalWidth), 560);
  assert.deepEqual(errors, []);
  await context.close();
});

/** How many times the page fetched each of the archive's wasm modules' files, from its resource timing. */
function fetchedModules(page) {
  return page.evaluate(() => {
    const counts = {};
    for (const entry of performance.getEntriesByType('resource')) {
      const name = new URL(entry.name).pathname.split('/').pop();
      if (/^(widget|settings)(\.js|_bg\.wasm)$/.test(name)) counts[name] = (counts[name] || 0) + 1;
    }
    return counts;
  });
}

test('a page loads no wasm until a call; the calls and settings modules are each fetched once, when needed', async () => {
  const { page, context, errors, stream } = await openWidget(browser);
  await waitFor(() => stream.open, 'the push stream opens');
  assert.deepEqual(await fetchedModules(page), {}, 'a page without calls or settings downloads no wasm');

  const webhook = await configure(page);
  await page.click('.modal .sandbox-modal__cancel');
  await openSettings(page);
  await page.waitForSelector('.modal .modal-body .kvoip-settings input[name="credentials.login"]', { timeout: STEP_MS });
  await page.click('.modal .sandbox-modal__cancel');
  assert.deepEqual(await fetchedModules(page), { 'settings.js': 1, 'settings_bg.wasm': 1 },
    'opening the settings twice fetches the settings module once, and not the calls module');

  for (const callId of [`lazy-a-${Date.now()}`, `lazy-b-${Date.now()}`]) {
    assert.equal((await postEvent(webhook, { callId, from: '+5511987650000', status: 'ringing' })).status, 200);
    await page.waitForSelector(`.kvoip-popup[data-call-id="${callId}"]`, { timeout: STEP_MS });
  }
  assert.deepEqual(await fetchedModules(page),
    { 'settings.js': 1, 'settings_bg.wasm': 1, 'widget.js': 1, 'widget_bg.wasm': 1 },
    'the first call fetches the calls module, once');
  assert.deepEqual(errors, []);
  await context.close();
});

test('destroy removes every element the widget added and its stylesheet', async () => {
  const { page, context, errors, stream } = await openWidget(browser);
  const webhook = await configure(page);
  assert.ok(webhook.url.startsWith(`${SERVER_URL}/hooks/voip/`), webhook.url);
  // A popup and a call-result modal too, so destroy has everything to clean up.
  await waitFor(() => stream.open, 'the push stream opens');
  const callId = `destroy-${Date.now()}`;
  for (const status of ['ringing', 'ended']) {
    const response = await postEvent(webhook, { callId, from: '+5511987650000', status });
    assert.equal(response.status, 200);
  }
  await page.waitForSelector('.kvoip-popup', { timeout: STEP_MS });
  await page.waitForSelector('.kvoip-result', { timeout: STEP_MS });

  // The call-result modal covers the page (and Kommo's settings modal): the button is pressed underneath it.
  await page.locator('.modal .sandbox-modal__disable').dispatchEvent('click');
  await page.waitForFunction(() => window.__sandbox.disabled === true, null, { timeout: STEP_MS });
  const calls = await page.evaluate(() => window.__sandbox.calls);
  assert.deepEqual(calls.slice(-2), ['onSave', 'destroy']);
  assert.deepEqual(await widgetElements(page), []);
  assert.equal(await page.$('#kvoip-style'), null);
  assert.deepEqual(errors, []);
  await context.close();
});

async function waitFor(condition, what) {
  const deadline = Date.now() + STEP_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
