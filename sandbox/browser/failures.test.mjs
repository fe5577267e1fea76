//! The widget fails politely where wasm cannot run: a missing .wasm and a page CSP without 'wasm-unsafe-eval'.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { archiveStrings, launch, openSettings, openWidget, save, screenshot } from './support.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const cases = [
  { name: 'the wasm file is missing', query: { block_wasm: '1' }, shot: 'wasm-blocked.png' },
  { name: 'the page CSP forbids compiling wasm', query: { csp: 'strict' } },
];

for (const { name, query, shot } of cases) {
  test(`when ${name} the callbacks still return true, the modal explains and onSave is false`, async () => {
    const { page, context, errors } = await openWidget(browser, query);
    const results = await page.evaluate(() => window.__sandbox.results);
    assert.deepEqual(results, { render: true, init: true, bind_actions: true });
    await openSettings(page);
    const failure = page.locator('.modal .kvoip-settings .kvoip-error');
    await failure.waitFor({ state: 'visible', timeout: 20_000 });
    const strings = await archiveStrings('en');
    assert.ok((await failure.textContent()).includes(strings.errors.wasm_failed));
    assert.equal(await save(page), false);
    if (shot) await screenshot(page, shot);
    const thrown = await page.evaluate(() => window.__sandbox.thrown);
    assert.deepEqual(thrown, []);
    assert.deepEqual(errors, []);
    await context.close();
  });
}
