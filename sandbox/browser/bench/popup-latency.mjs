//! The popup's latency as a manager sees it: from the webhook's 200 to the caller's name on screen in
//! Chromium, for a known contact; the first call from each number (Kommo looked up) and a repeat (the
//! server's description of the number reused), p50 and p95, calls a second apart. Then what the page's
//! first call costs, since a page loads the calls module only then (cold and warm browser cache), and how
//! soon a page opened during a ring (a reload, a new tab) shows the call after script.js arrives. Run by
//! `cargo xtask bench`.
import { SANDBOX_URL, configure, launch, openWidget, postEvent, streamOpen } from '../support.mjs';

const CALLS = Number(process.env.POPUP_BENCH_CALLS || 30);

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function summary(name, samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  const fmt = (ms) => `${ms.toFixed(1)} ms`;
  return `${name.padEnd(44)} p50 ${fmt(percentile(sorted, 50)).padStart(9)}  p95 ${fmt(percentile(sorted, 95)).padStart(9)}  (${samples.length} calls)`;
}

const browser = await launch();
try {
  const { page, context, account, stream } = await openWidget(browser);
  // No result modal after each call: the calls here are ended only so that they are not in progress.
  const webhook = await configure(page, async (form) => {
    await form.uncheck('.kvoip-settings input[name="call_handling.widget.call_feedback_modal"]');
  });
  await page.click('.modal .sandbox-modal__cancel');
  await streamOpen(stream);
  // Each popup is timed in the page, from before any script runs: the moment its card shows (wall clock,
  // and the page's clock for comparing with script.js's arrival) and the moment it says who is calling.
  await context.addInitScript(() => {
    window.__named = {};
    window.__shown = {};
    window.__shownAt = {};
    new MutationObserver(() => {
      const now = Date.now();
      for (const card of document.querySelectorAll('.kvoip-popup[data-call-id]')) {
        const id = card.getAttribute('data-call-id');
        if (!(id in window.__shown)) {
          window.__shown[id] = now;
          window.__shownAt[id] = performance.now();
        }
        if (card.getAttribute('data-known') === 'known' && !(id in window.__named)) window.__named[id] = now;
      }
    }).observe(document, { subtree: true, childList: true, attributes: true });
  });
  stream.open = false;
  await page.reload();
  await page.waitForFunction(() => window.__sandbox && window.__sandbox.ready, null, { timeout: 20_000 });
  await streamOpen(stream);
  const seed = async (name, number) => {
    const seeded = await fetch(`${SANDBOX_URL}/sandbox/kommo/contacts`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ account_id: account, name, phones: [number], leads: [{ name: `Deal of ${name}` }] }),
    });
    if (!seeded.ok) throw new Error(`seeding a contact: ${seeded.status}`);
  };
  await seed('First Caller', '+5511987640000');

  /** Webhook 200 → the card (with the number) on `on`; the call is then ended. */
  async function timeCard(on, callId, from) {
    const response = await postEvent(webhook, { callId, from, status: 'ringing' });
    const answered = Date.now();
    if (response.status !== 200) throw new Error(`webhook answered ${response.status}`);
    await on.waitForFunction((id) => id in window.__shown, callId, { timeout: 20_000 });
    const shown = await on.evaluate((id) => window.__shown[id], callId);
    await postEvent(webhook, { callId, from, status: 'ended', duration: 5 });
    return Math.max(0, shown - answered);
  }

  // The page's first call loads the calls module: here with nothing cached yet.
  const coldFirst = [await timeCard(page, `bench-cold-${Date.now()}`, '+5511987640000')];

  async function timeCall(callId, from, { waitForLeads = false } = {}) {
    const response = await postEvent(webhook, { callId, from, status: 'ringing' });
    const answered = Date.now();
    if (response.status !== 200) throw new Error(`webhook answered ${response.status}`);
    await page.waitForFunction((id) => id in window.__named, callId, { timeout: 20_000 });
    const [shown, named] = await page.evaluate((id) => [window.__shown[id], window.__named[id]], callId);
    numberShown.push(Math.max(0, shown - answered));
    if (waitForLeads) {
      // The whole description (open leads too) before the card closes, so the next call from the
      // number finds it described.
      await page.waitForSelector(`.kvoip-popup[data-call-id="${callId}"] .kvoip-popup__lead`, { timeout: 20_000 });
    }
    // The card closes so that the board never fills, and the call ends so that it is not in progress.
    await page.evaluate((id) => document.querySelector(`.kvoip-popup[data-call-id="${id}"] .kvoip-popup__close`)?.click(), callId);
    await postEvent(webhook, { callId, from, status: 'ended', duration: 5 });
    return Math.max(0, named - answered);
  }

  const numberShown = [];
  const first = [];
  const repeat = [];
  for (let n = 0; n < CALLS; n += 1) {
    const number = `+55119876${50000 + n}`;
    await seed(`Client ${n}`, number);
    first.push(await timeCall(`bench-first-${n}-${Date.now()}`, number, { waitForLeads: true }));
    repeat.push(await timeCall(`bench-again-${n}-${Date.now()}`, number));
    // Calls a second apart, as on a busy line: each lookup finds the account's Kommo budget (7
    // requests/s) as a real account would, not spent by the call just before.
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  // A page's first call with the browser's cache warm: a new tab of the same browser, its first call.
  const warmFirst = [];
  for (let n = 0; n < 10; n += 1) {
    const tab = await context.newPage();
    const open = { open: false };
    tab.on('response', (response) => {
      if (response.url().includes('/widget/v1/push/events')) open.open = response.status() === 200;
    });
    await tab.goto(page.url());
    await tab.waitForFunction(() => window.__sandbox && window.__sandbox.ready, null, { timeout: 20_000 });
    await streamOpen(open);
    warmFirst.push(await timeCard(tab, `bench-tab-${n}-${Date.now()}`, '+5511987640000'));
    await tab.close();
  }

  // A page opened while a call rings (a reload; the cache warm): from script.js's arrival to the card.
  const ringing = `bench-ringing-${Date.now()}`;
  await postEvent(webhook, { callId: ringing, from: '+5511987640000', status: 'ringing' });
  await page.waitForFunction((id) => id in window.__shown, ringing, { timeout: 20_000 });
  const reloaded = [];
  for (let n = 0; n < 10; n += 1) {
    await page.reload();
    await page.waitForFunction((id) => window.__shownAt && id in window.__shownAt, ringing, { timeout: 20_000 });
    reloaded.push(await page.evaluate((id) => {
      const script = performance.getEntriesByType('resource').find((entry) => /\/script\.js(\?|$)/.test(entry.name));
      return window.__shownAt[id] - script.responseEnd;
    }, ringing));
  }
  await postEvent(webhook, { callId: ringing, from: '+5511987640000', status: 'ended', duration: 5 });

  console.log('popup latency: webhook 200 → caller\'s name visible in Chromium (goal p95 ≤ 150 ms)');
  console.log(summary('  the card with the number (every call)', numberShown));
  console.log(summary('  first call from a number (Kommo asked)', first));
  console.log(summary('  a number described lately (no Kommo request)', repeat));
  console.log('a page\'s first call, which loads the calls module: webhook 200 → the card');
  console.log(summary('  nothing cached (a browser\'s first Kommo page)', coldFirst));
  console.log(summary('  cache warm (a new tab)', warmFirst));
  console.log('a call in progress when the page opens (a reload, cache warm): script.js arrives → the card (goal ≤ 100 ms)');
  console.log(summary('  the card on screen', reloaded).replace('calls)', 'reloads)'));
} finally {
  await browser.close();
}
