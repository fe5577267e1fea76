//! The settings screen in each language the widget ships: its own strings, no raw keys, fitting the modal.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { archiveStrings, launch, openSettings, openWidget, screenshot, waitForForm } from './support.mjs';

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
    const shown = await form.innerText();
    for (const key of ['voip_login', 'voip_password']) {
      assert.ok(shown.includes(strings.settings[key]), `${lang}: the label settings.${key} is shown`);
    }
    assert.doesNotMatch(shown, /\b(settings|errors|popup|status)\.[a-z_]+\b/, `${lang}: no raw i18n keys`);
    const fits = await page.evaluate(() => {
      const body = document.querySelector('.modal .modal-body').getBoundingClientRect();
      const root = document.querySelector('.kvoip-settings');
      const box = root.getBoundingClientRect();
      return box.left >= body.left && box.right <= body.right + 0.5 && root.scrollWidth <= root.clientWidth + 1;
    });
    assert.ok(fits, `${lang}: the form fits the 560px modal`);
    await screenshot(page, `settings-${lang}.png`);
    assert.deepEqual(errors, []);
    await context.close();
  });
}
