//! The settings screen in each language the widget ships: its own strings, no raw keys, fitting the modal.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  STEP_MS, archiveStrings, configure, launch, modalScreenshot, openSettings, openWidget, postEvent, screenshot, streamOpen,
  waitForForm,
} from './support.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

for (const lang of ['en', 'es', 'pt']) {
  test(`the settings screen looks right in ${lang}`, async () => {
    const strings = await archiveStrings(lang);
    const { page, context, errors } = await openWidget(browser, { lang });
    await openSettings(page);
    await waitForForm(page);
    const form = page.locator('.modal .kvoip-settings');
    // textContent: the section titles are upper-cased by CSS, innerText would be too.
    const shown = await form.textContent();
    for (const key of ['section_provider', 'voip_login', 'voip_password', 'section_widget', 'section_unknown',
      'section_known', 'section_missed', 'section_outgoing', 'section_leads', 'section_extensions', 'section_webhook']) {
      assert.ok(shown.includes(strings.settings[key]), `${lang}: the label settings.${key} is shown`);
    }
    assert.doesNotMatch(shown, /\b(settings|errors|popup|status)\.[a-z_]+\b/, `${lang}: no raw i18n keys`);
    const fits = await page.evaluate(() => {
      const body = document.querySelector('.modal .modal-body').getBoundingClientRect();
      const root = document.querySelector('.kvoip-settings');
      const box = root.getBoundingClientRect();
      const inside = Array.from(root.querySelectorAll('*')).every((element) => {
        const rect = element.getBoundingClientRect();
        return rect.width === 0 || (rect.left >= box.left - 0.5 && rect.right <= box.right + 0.5);
      });
      return box.left >= body.left && box.right <= body.right + 0.5 && root.scrollWidth <= root.clientWidth + 1 && inside;
    });
    assert.ok(fits, `${lang}: the form fits the 560px modal`);
    await modalScreenshot(page, `settings-${lang}.png`);
    assert.deepEqual(errors, []);
    await context.close();
  });
}

for (const lang of ['en', 'es', 'pt']) {
  test(`the call-result modal looks right in ${lang}`, async () => {
    const strings = await archiveStrings(lang);
    const { page, context, errors, stream } = await openWidget(browser, { lang });
    const webhook = await configure(page, (p) => p.check('.kvoip-settings input[name="call_handling.widget.call_quality_rating"]'));
    await page.click('.modal .sandbox-modal__cancel');
    await streamOpen(stream);
    const callId = `looks-${lang}-${Date.now()}`;
    for (const status of ['ringing', 'busy']) await postEvent(webhook, { callId, from: '+5511944443333', status });
    const dialog = page.locator('.kvoip-result .kvoip-result__window');
    await dialog.waitFor({ state: 'visible', timeout: STEP_MS });
    await dialog.locator('input[name=follow_up]').check();
    const shown = await dialog.textContent();
    for (const key of ['title', 'outcome', 'quality', 'note', 'follow_up', 'task_text', 'task_due', 'save', 'skip']) {
      assert.ok(shown.includes(strings.result[key]), `${lang}: result.${key} is shown`);
    }
    assert.ok(shown.includes(strings.result.outcome_7), `${lang}: a busy call starts as "number busy"`);
    assert.doesNotMatch(shown, /\b(result|errors|status|popup)\.[a-z_0-9]+\b/, `${lang}: no raw i18n keys`);
    const fits = await dialog.evaluate((box) => {
      const outer = box.getBoundingClientRect();
      return Array.from(box.querySelectorAll('*')).every((element) => {
        const rect = element.getBoundingClientRect();
        return rect.width === 0 || (rect.left >= outer.left - 0.5 && rect.right <= outer.right + 0.5);
      });
    });
    assert.ok(fits, `${lang}: everything fits inside the dialog`);
    await screenshot(page, `call-result-${lang}.png`);
    assert.deepEqual(errors, []);
    await context.close();
  });
}
