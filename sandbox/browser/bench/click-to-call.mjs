//! Click-to-call's latency as a manager feels it: from the click on a number in Kommo's contacts list to the VoIP
//! provider receiving the originate request (the provider stand-in's clock; both on this machine), p50 and
//! p95. Three ways: a page whose calls module (the wasm) is loaded, a page just opened (script.js only, the
//! wasm not loaded: click-to-call never waits for it), and, as the bare baseline in the same run, the page
//! posting the same request to the provider itself (no server between). Run by `cargo xtask bench`.
import { PROVIDER, SANDBOX_URL, configure, launch, openWidget, postEvent, streamOpen } from '../support.mjs';

const CLICKS = Number(process.env.CLICK_BENCH_CLICKS || 15);
// The server holds a user's next call this long after one was placed (a double click places one call).
const HOLD_MS = 3_200;

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function stats(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p95: percentile(sorted, 95) };
}

function line(name, samples, baseline) {
  const { p50, p95 } = stats(samples);
  const fmt = (ms) => `${ms.toFixed(1)} ms`.padStart(9);
  const ratio = baseline ? `  (${(p95 / stats(baseline).p95).toFixed(1)}× the bare p95)` : '';
  return `${name.padEnd(46)} p50 ${fmt(p50)}  p95 ${fmt(p95)}  (${samples.length} clicks)${ratio}`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function originateRequests() {
  const stats = await (await fetch(`${SANDBOX_URL}/sandbox/voip/stats`)).json();
  return stats.originate_requests || [];
}

/** Clicks the contacts list's first number on `page`; resolves with the ms from the click to the provider's receipt. */
async function timeClick(page) {
  const before = (await originateRequests()).length;
  const clickedAt = await page.evaluate(() => {
    const number = document.querySelector('a.sandbox-phone[data-action="phone"]');
    const at = Date.now();
    number.click();
    return at;
  });
  const deadline = Date.now() + 20_000;
  for (;;) {
    const requests = await originateRequests();
    if (requests.length > before) return Math.max(0, requests[before].received_at_ms - clickedAt);
    if (Date.now() > deadline) throw new Error('the provider never received the click\'s call');
    await sleep(5);
  }
}

const browser = await launch();
try {
  const { page, stream, account } = await openWidget(browser);
  const seeded = await fetch(`${SANDBOX_URL}/sandbox/kommo/contacts`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ account_id: account, name: 'Bench Client', phones: ['+5511987654321'] }),
  });
  if (!seeded.ok) throw new Error(`seeding a contact: ${seeded.status}`);
  const user = await page.evaluate(() => String(window.__sandbox.widget.system().amouser_id));
  const webhook = await configure(page, async (form) => {
    await form.uncheck('.kvoip-settings input[name="call_handling.widget.call_feedback_modal"]');
    await form.click('.kvoip-add-extension');
    await form.fill('.kvoip-settings [name="extensions.entries[0].extension"]', '101');
    await form.selectOption('.kvoip-settings [name="extensions.entries[0].user_id"]', user);
  });
  await page.click('.modal .sandbox-modal__cancel');
  await streamOpen(stream);
  // The placed calls are only recorded: no events, so no popup and no call-result form between clicks.
  await fetch(`${SANDBOX_URL}/sandbox/voip/accounts/sandbox-voip/webhook`, { method: 'DELETE' });
  await page.evaluate(() => window.__sandbox.showView('contacts'));
  await page.waitForSelector('a.sandbox-phone.sandbox-action_on', { timeout: 20_000 });

  // A page just opened: script.js only.
  const cold = [];
  for (let n = 0; n < CLICKS; n += 1) {
    await page.reload();
    await page.waitForFunction(() => window.__sandbox && window.__sandbox.ready, null, { timeout: 20_000 });
    await page.evaluate(() => window.__sandbox.showView('contacts'));
    await page.waitForSelector('a.sandbox-phone.sandbox-action_on', { timeout: 20_000 });
    if (await page.evaluate(() => !!document.querySelector('.kvoip-popups'))) throw new Error('the wasm loaded');
    cold.push(await timeClick(page));
    await sleep(HOLD_MS);
  }

  // The calls module loaded (a call came in on this page), then clicks.
  const callId = `bench-load-${Date.now()}`;
  await postEvent(webhook, { callId, from: '+5511987640000', status: 'ringing' });
  await page.waitForSelector(`.kvoip-popup[data-call-id="${callId}"]`, { timeout: 20_000 });
  await postEvent(webhook, { callId, from: '+5511987640000', status: 'ended', duration: 5 });
  const warm = [];
  for (let n = 0; n < CLICKS; n += 1) {
    warm.push(await timeClick(page));
    await sleep(HOLD_MS);
  }

  // The bare baseline: the page posts the originate request to the provider itself on a click.
  const bare = [];
  for (let n = 0; n < CLICKS; n += 1) {
    const before = (await originateRequests()).length;
    const clickedAt = await page.evaluate(({ login, password }) => {
      const at = Date.now();
      fetch('/voip/v1/calls', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Basic ${btoa(`${login}:${password}`)}` },
        body: JSON.stringify({ extension: '101', to: '+5511987654321' }),
      });
      return at;
    }, { login: PROVIDER.login, password: PROVIDER.password });
    for (;;) {
      const requests = await originateRequests();
      if (requests.length > before) {
        bare.push(Math.max(0, requests[before].received_at_ms - clickedAt));
        break;
      }
      await sleep(5);
    }
  }

  console.log('click-to-call: a click on a number → the provider receives the originate request (goal p95 ≤ 150 ms, wasm loaded)');
  console.log(line('  bare: the page posts to the provider itself', bare));
  console.log(line('  the calls module (wasm) loaded', warm, bare));
  console.log(line('  a page just opened (wasm not loaded)', cold, bare));
} finally {
  await browser.close();
}
