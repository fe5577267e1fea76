//! The settings screen in each language the widget ships: its own strings, no raw keys, fitting the modal.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { archiveStrings, launch, modalScreenshot, openSettings, openWidget, waitForForm } from './support.mjs';

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
