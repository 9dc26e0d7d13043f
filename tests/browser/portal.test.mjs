// The Admin Portal in a real browser: Debian's headless Chromium driven by playwright-core
// (never a downloaded browser), against the real `trailmark` binary, with every link made by
// the official Node SDK (`workos.adminPortal.generateLink`).
//
// Run from the repository root:   node --test tests/browser/
// Binary under test:              $TRAILMARK_BIN, default <repo>/target/debug/trailmark
// Browser:                        $CHROMIUM_BIN, default /usr/bin/chromium (apt install chromium)
// Screenshots:                    tests/browser/screenshots/ (README's copies: docs/screenshots/)
//
// The tests in the `describe` run in order over one server and one seeded pair of
// organizations (Acme, whose admins use the portal, and Globex, whose ids they try to reach).
// The expired-link test starts a second server whose links last 1 second, through the hidden
// `--portal-link-ttl-secs` flag, rather than waiting WorkOS's 5 minutes.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

import { WorkOS, UnprocessableEntityException } from '@workos-inc/node';
import { chromium } from 'playwright-core';

import { startTrailmark, stopTrailmark } from '../support/trailmark-process.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const CHROMIUM_BIN = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const SCREENSHOTS = join(HERE, 'screenshots');
const RETURN_URL = 'https://app.example.com/settings/audit';

// ---------------------------------------------------------------------------------------
// Processes: the server under test and the browser

/** Starts `trailmark serve` on a free port over a fresh data directory, with streams allowed to
 * reach the local receiver; resolves with its URL and an SDK client pointed at it. */
async function startServer(apiKey, extraArgs = []) {
  const dataDir = mkdtempSync(join(tmpdir(), 'trailmark-browser-'));
  const { child, port } = await startTrailmark({
    apiKey,
    dataDir,
    args: ['--allow-private-destinations', ...extraArgs],
  });
  return {
    child,
    dataDir,
    port,
    url: `http://127.0.0.1:${port}`,
    workos: new WorkOS(apiKey, { apiHostname: '127.0.0.1', port, https: false }),
  };
}

async function stopServer(server) {
  if (!server) return;
  await stopTrailmark(server.child);
  rmSync(server.dataDir, { recursive: true, force: true });
}

/** A stream destination: a local HTTP server that records every envelope it receives, and the
 * headers of every request. */
function startReceiver() {
  const received = [];
  const headers = [];
  const server = createServer((request, response) => {
    headers.push(request.headers);
    let body = '';
    request.setEncoding('utf8');
    request.on('data', (chunk) => {
      body += chunk;
    });
    request.on('end', () => {
      // `format: json` sends a JSON array of envelopes per request.
      received.push(...JSON.parse(body));
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end('{}');
    });
  });
  return new Promise((done) => {
    server.listen(0, '127.0.0.1', () => {
      done({ server, received, headers, url: `http://127.0.0.1:${server.address().port}/audit-hook` });
    });
  });
}

/** The actions the receiver got, in order (HTTP streams send WorkOS's `{event: …}` envelope). */
const receivedActions = (receiver) => receiver.received.map((envelope) => envelope.event.action);

/** Polls `check` until it returns a truthy value, up to ~20 s. */
async function eventually(what, check) {
  for (let attempt = 0; attempt < 100; attempt += 1) {
    const value = await check();
    if (value) return value;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`never happened: ${what}`);
}

// ---------------------------------------------------------------------------------------
// Fixtures

let server;
let browser;
let acme;
let globex;
let globexEventId;
let globexStreamId;
let receiver;
const cspViolations = [];

/** A fresh browser context (no cookies) with a page that records CSP violations. */
async function newPage(viewport = { width: 1100, height: 760 }) {
  const context = await browser.newContext({ viewport, acceptDownloads: true });
  const page = await context.newPage();
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) cspViolations.push(message.text());
  });
  page.on('dialog', (dialog) => dialog.accept());
  return page;
}

async function portalLink(intent, organization = acme.id, srv = server) {
  const { link } = await srv.workos.adminPortal.generateLink({
    organization,
    intent,
    returnUrl: RETURN_URL,
    adminEmails: ['it@acme.test'],
  });
  return link;
}

async function seed() {
  acme = await server.workos.organizations.createOrganization({ name: 'Acme Corp' });
  globex = await server.workos.organizations.createOrganization({ name: 'Globex' });
  const people = [
    { id: 'user_ada', name: 'Ada Lovelace', type: 'user' },
    { id: 'user_grace', name: 'Grace Hopper', type: 'user' },
  ];
  for (let n = 0; n < 30; n += 1) {
    const exported = n % 3 === 0;
    await server.workos.auditLogs.createEvent(acme.id, {
      action: exported ? 'document.exported' : 'user.signed_in',
      occurredAt: new Date(Date.UTC(2026, 7, 1, 9, n)),
      actor: people[n % 2],
      targets: exported ? [{ id: `doc_${n}`, type: 'document', name: `Q${n} report` }] : [{ id: 'team_1', type: 'team' }],
      context: { location: '203.0.113.7', userAgent: 'Firefox' },
      metadata: { n },
    });
  }
  await server.workos.auditLogs.createEvent(globex.id, {
    action: 'globex.secret_plan',
    occurredAt: new Date(Date.UTC(2026, 7, 1)),
    actor: { id: 'user_hank', name: 'Hank Scorpio', type: 'user' },
    targets: [],
    context: { location: '198.51.100.1' },
  });
  const headers = { Authorization: `Bearer ${server.apiKey}`, 'Content-Type': 'application/json' };
  const events = await (await fetch(`${server.url}/audit_logs/events?organization_id=${globex.id}`, { headers })).json();
  globexEventId = events.data[0].id;
  const stream = await fetch(`${server.url}/audit_logs/streams`, {
    method: 'POST',
    headers,
    body: JSON.stringify({
      organization_id: globex.id,
      type: 'http',
      name: 'Globex SIEM',
      config: { url: 'http://127.0.0.1:9/globex' },
    }),
  });
  assert.equal(stream.status, 201);
  globexStreamId = (await stream.json()).id;
}

before(async () => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const apiKey = `sk_browser_${randomBytes(12).toString('hex')}`;
  server = await startServer(apiKey);
  server.apiKey = apiKey;
  // The pages link to the test's return and success URLs (app.example.com): no name resolves,
  // but 127.0.0.1, so the browser can reach nothing but the loopback server the tests use.
  browser = await chromium.launch({
    executablePath: CHROMIUM_BIN,
    args: ['--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'],
  });
  receiver = await startReceiver();
  await seed();
});

after(async () => {
  await browser?.close();
  receiver?.server.close();
  await stopServer(server);
});

// ---------------------------------------------------------------------------------------
// The audit log section

describe('audit_logs intent', () => {
  let page;

  it('opens a link made by the Node SDK and shows the events, newest first', async () => {
    const link = await portalLink('audit_logs');
    assert.match(link, new RegExp(`^${server.url}/portal\\?token=[0-9a-f]{64}$`));
    page = await newPage();
    await page.goto(link);
    await page.waitForURL(`${server.url}/portal/events`);
    assert.equal(await page.locator('header .org').textContent(), 'Acme Corp');
    assert.equal(await page.locator('header a.back').getAttribute('href'), RETURN_URL);
    const rows = page.locator('table.events tbody tr');
    assert.equal(await rows.count(), 25);
    // Newest first: the portal recorded its own session (31), the link's creation with the API key
    // was recorded before it (30, the key as actor), then the seeded events, newest first.
    assert.equal(await rows.nth(0).locator('td').nth(2).textContent(), 'trailmark.portal.session.opened');
    assert.match(await rows.nth(0).locator('td').nth(3).textContent(), /^it@acme\.test portal_session_[0-9A-Z]{26}$/);
    assert.equal(await rows.nth(1).locator('td').nth(0).textContent(), '30');
    assert.equal(await rows.nth(1).locator('td').nth(2).textContent(), 'trailmark.portal_link.created');
    assert.match(await rows.nth(1).locator('td').nth(3).textContent(), /\bkey_[0-9A-Za-z_]+$/);
    assert.equal(await rows.nth(2).locator('td').nth(0).textContent(), '29');
    assert.equal(await page.getByText('Hank Scorpio').count(), 0);
    await page.screenshot({ path: join(SCREENSHOTS, 'portal-events.png') });
  });

  it('is keyboard-first: Tab reaches "Skip to content" first', async () => {
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to content');
  });

  it('pages back through older events with the sequence cursor', async () => {
    await page.getByRole('link', { name: 'Older events →' }).click();
    // Sequences 31 (the session's own event) to 7 were on the first page.
    await page.waitForURL(/before=7$/);
    const sequences = await page.locator('table.events tbody tr td:first-child').allTextContents();
    assert.deepEqual(sequences, ['6', '5', '4', '3', '2', '1', '0']);
    assert.equal(await page.getByRole('link', { name: 'Older events →' }).count(), 0);
    await page.getByRole('link', { name: '← Newest' }).click();
    await page.waitForURL(`${server.url}/portal/events`);
  });

  it('filters with the read API filters (actions and free text)', async () => {
    await page.getByLabel('Actions (e.g. user.*)').fill('document.*');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.waitForURL(/actions=document\.\*/);
    const actions = await page.locator('table.events tbody tr td:nth-child(3)').allTextContents();
    assert.equal(actions.length, 10);
    assert.ok(actions.every((a) => a === 'document.exported'), actions.join());
    await page.getByLabel('Text (3+ characters)').fill('grace');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.waitForURL(/q=grace/);
    const actors = await page.locator('table.events tbody tr td:nth-child(4)').allTextContents();
    assert.equal(actors.length, 5);
    assert.ok(actors.every((a) => a.startsWith('Grace Hopper')), actors.join());
    // A filter the read API refuses is shown, not crashed on.
    await page.getByLabel('Text (3+ characters)').fill('gr');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.locator('.notice.error').waitFor();
    assert.match(await page.locator('.notice.error').textContent(), /q/);
    await page.getByLabel('Text (3+ characters)').fill('');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.waitForURL((url) => url.searchParams.get('q') === '');
    assert.equal(await page.locator('table.events tbody tr').count(), 10);
  });

  it('exports the filtered events as CSV and downloads the file', async () => {
    await page.getByRole('button', { name: 'Export CSV' }).click();
    await page.waitForURL(/\/portal\/exports\/audit_log_export_/);
    const download = page.locator('#download');
    await download.waitFor({ timeout: 20_000 });
    assert.match(await page.locator('#export-state').textContent(), /ready: 10 events/);
    const [file] = await Promise.all([page.waitForEvent('download'), download.click()]);
    const csv = readFileSync(await file.path(), 'utf8').trim().split('\n');
    assert.match(csv[0], /^id,organization_id,sequence,occurred_at,received_at,action,/);
    assert.equal(csv.length, 11);
    assert.ok(csv.slice(1).every((line) => line.includes(',document.exported,')), csv.join('\n'));
    assert.ok(csv.slice(1).every((line) => line.includes(acme.id)));
  });

  it('exports NDJSON with inclusion proofs and a signed checkpoint', async () => {
    await page.goto(`${server.url}/portal/events?actions=document.*`);
    await page.getByRole('button', { name: 'Export NDJSON (verifiable)' }).click();
    const download = page.locator('#download');
    await download.waitFor({ timeout: 20_000 });
    const [file] = await Promise.all([page.waitForEvent('download'), download.click()]);
    const lines = readFileSync(await file.path(), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const events = lines.slice(0, -1);
    assert.equal(events.length, 10);
    assert.ok(events.every((e) => e.action === 'document.exported' && e.leaf_hash && Array.isArray(e.inclusion_proof)));
    assert.match(JSON.stringify(lines.at(-1)), /checkpoint/);
  });

  it('shows one event with its leaf hash and a checked inclusion proof', async () => {
    await page.goto(`${server.url}/portal/events?actions=document.*`);
    await page.locator('table.events tbody tr').first().locator('a').click();
    await page.waitForURL(/\/portal\/events\/event_/);
    assert.match(await page.locator('#proof').textContent(), /Unaltered, and included in the signed checkpoint/);
    assert.match(await page.locator('pre.json').textContent(), /"action": "document.exported"/);
    await page.screenshot({ path: join(SCREENSHOTS, 'portal-event.png'), fullPage: true });
  });

  it('records the exports in the organization\'s own log, with the session as actor', async () => {
    await page.goto(`${server.url}/portal/events?actions=trailmark.portal.export.created`);
    const rows = page.locator('table.events tbody tr');
    assert.equal(await rows.count(), 2);
    assert.match(await rows.first().locator('td').nth(3).textContent(), /^it@acme\.test portal_session_/);
  });

  it('refuses another organization\'s event id edited into the URL (404)', async () => {
    const response = await page.goto(`${server.url}/portal/events/${globexEventId}`);
    assert.equal(response.status(), 404);
    assert.equal(await page.locator('h1').textContent(), 'Not found');
    assert.equal(await page.getByText('Hank').count(), 0);
    const wrongSection = await page.goto(`${server.url}/portal/streams`);
    assert.equal(wrongSection.status(), 403);
  });

  it('shows an event posted while the page is open, without a reload (live stream)', async () => {
    await page.goto(`${server.url}/portal/events`);
    const firstBefore = await page.locator('table.events tbody tr td:first-child').first().textContent();
    let reloaded = false;
    page.once('framenavigated', () => {
      reloaded = true;
    });
    // Posted once the page's script says its stream is open.
    await page.locator('table.events[data-live-state="open"]').waitFor({ timeout: 5_000 });
    await server.workos.auditLogs.createEvent(acme.id, {
      action: 'user.live_arrival',
      occurredAt: new Date(),
      actor: { id: 'user_ada', name: 'Ada Lovelace', type: 'user' },
      targets: [{ id: 'team_1', type: 'team', name: 'Core' }],
      context: { location: '203.0.113.9' },
      metadata: { live: true },
    });
    const first = page.locator('table.events tbody tr').first();
    await first.locator('td', { hasText: 'user.live_arrival' }).waitFor({ timeout: 5_000 });
    assert.equal(Number(await first.locator('td').first().textContent()), Number(firstBefore) + 1);
    assert.equal(await first.locator('td').nth(3).textContent(), 'Ada Lovelace user_ada');
    assert.equal(await first.locator('td').nth(4).textContent(), 'team:Core');
    assert.match(await first.locator('a').getAttribute('href'), /^\/portal\/events\/event_/);
    assert.equal(reloaded, false, 'the page did not reload');
    // A filtered page follows only what matches its filters.
    await page.goto(`${server.url}/portal/events?actions=document.*`);
    await page.locator('table.events[data-live-state="open"]').waitFor({ timeout: 5_000 });
    for (const action of ['user.ignored', 'document.live']) {
      await server.workos.auditLogs.createEvent(acme.id, {
        action,
        occurredAt: new Date(),
        actor: { id: 'user_grace', name: 'Grace Hopper', type: 'user' },
        targets: [{ id: 'doc_live', type: 'document' }],
        context: { location: '203.0.113.9' },
      });
    }
    await page.locator('table.events tbody tr').first().locator('td', { hasText: 'document.live' }).waitFor({ timeout: 5_000 });
    assert.equal(await page.getByText('user.ignored').count(), 0);
  });

  it('reads well on a phone', async () => {
    const phone = await newPage({ width: 390, height: 844 });
    await phone.goto(await portalLink('audit_logs'));
    await phone.waitForURL(`${server.url}/portal/events`);
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    assert.equal(overflow, false, 'the page scrolls sideways on a phone');
    await phone.screenshot({ path: join(SCREENSHOTS, 'portal-events-phone.png') });
    await phone.context().close();
  });
});

// ---------------------------------------------------------------------------------------
// The log streams section

describe('log_streams intent', () => {
  let page;
  const badge = () => page.locator('#health .badge');

  /** Reloads the stream's page until `check(text of #health)` holds. */
  const healthBecomes = (what, check) =>
    eventually(what, async () => {
      await page.reload();
      return check(await page.locator('#health').textContent());
    });

  it('adds an HTTP stream to a local receiver and watches it deliver', async () => {
    page = await newPage();
    await page.goto(await portalLink('log_streams'));
    await page.waitForURL(`${server.url}/portal/streams`);
    assert.match(await page.locator('main').textContent(), /No log streams yet/);
    await page.getByRole('link', { name: 'Add a stream' }).click();
    await page.getByLabel('Name *').fill('Acme SIEM');
    await page.getByLabel('Endpoint URL *').fill(receiver.url);
    await page.getByLabel('Format').selectOption('json');
    await page.getByRole('button', { name: 'Create stream' }).click();
    // The signing secret the server made is shown once, then the page goes on to the stream.
    assert.match(await page.locator('#signing-secret').textContent(), /^whsec_/);
    await page.getByRole('link', { name: 'Continue' }).click();
    await page.waitForURL(/\/portal\/streams\/log_stream_[0-9A-Z]+\?notice=created$/);
    assert.equal(await badge().textContent(), 'active');
    // The stream starts at the end of the log; the first event after it is the portal's own
    // record of its creation, so the receiver gets that and the stream shows a sync.
    await eventually('the receiver got the creation event', () =>
      receivedActions(receiver).includes('trailmark.portal.stream.created'),
    );
    await healthBecomes('last synced is shown', (text) => !/Last synced \(UTC\)never/.test(text));
    assert.equal(await badge().textContent(), 'active');
    assert.equal(await page.locator('form input[type=password]').count(), 0);
    await page.screenshot({ path: join(SCREENSHOTS, 'portal-stream.png'), fullPage: true });
  });

  it('sends a test event', async () => {
    await page.getByRole('button', { name: 'Send test event' }).click();
    await page.waitForURL(/notice=test_delivered/);
    assert.match(await page.locator('.notice.ok').textContent(), /Test event delivered/);
    assert.ok(receivedActions(receiver).includes('trailmark.stream.test'));
  });

  it('pauses (events wait) and resumes (they arrive)', async () => {
    await page.getByRole('button', { name: 'Pause' }).click();
    await page.waitForURL(/notice=paused/);
    assert.equal(await badge().textContent(), 'inactive');
    await server.workos.auditLogs.createEvent(acme.id, {
      action: 'user.signed_out',
      occurredAt: new Date(),
      actor: { id: 'user_ada', name: 'Ada Lovelace', type: 'user' },
      targets: [],
      context: { location: '203.0.113.7' },
    });
    await healthBecomes('the paused stream lags', (text) => /Lag[1-9]\d* events/.test(text));
    await page.getByRole('button', { name: 'Resume' }).click();
    await page.waitForURL(/notice=resumed/);
    assert.equal(await badge().textContent(), 'active');
    await eventually('the event made while paused arrives', () =>
      receivedActions(receiver).includes('user.signed_out'),
    );
  });

  it('replays from a time', async () => {
    const before = receivedActions(receiver).filter((a) => a === 'document.exported').length;
    await page.getByLabel('Replay from (UTC)').fill('2026-01-01T00:00:00');
    await page.getByRole('button', { name: 'Replay' }).click();
    await page.waitForURL(/notice=replayed&detail=0/);
    await eventually('replayed events arrive', () =>
      receivedActions(receiver).filter((a) => a === 'document.exported').length >= before + 10,
    );
  });

  it('edits the stream: new settings apply, credentials stay unless retyped', async () => {
    const headers = { Authorization: `Bearer ${server.apiKey}` };
    const streamId = page.url().match(/log_stream_[0-9A-Z]+/)[0];
    const before = await (await fetch(`${server.url}/audit_logs/streams/${streamId}`, { headers })).json();
    await page.goto(`${server.url}/portal/streams/${streamId}`);
    await page.getByRole('link', { name: 'Edit settings' }).click();
    await page.waitForURL(`${server.url}/portal/streams/${streamId}/edit`);
    assert.equal(await page.getByLabel('Name *').inputValue(), 'Acme SIEM');
    assert.equal(await page.getByLabel('Endpoint URL *').inputValue(), receiver.url);
    assert.equal(await page.getByLabel('Signing secret').inputValue(), '', 'a credential is never shown');
    assert.equal(await page.getByLabel('Batch: longest wait').getAttribute('placeholder'), 'default: 0');

    // A bad value is refused beside its field, and nothing changes.
    await page.getByLabel('Endpoint URL *').fill('ftp://siem.example.com');
    await page.getByRole('button', { name: 'Save changes' }).click();
    const error = page.locator('[id="config.url-error"]');
    await error.waitFor();
    assert.match(await error.textContent(), /url/i);

    await page.getByLabel('Endpoint URL *').fill(receiver.url);
    await page.getByLabel('Name *').fill('Acme SIEM (EU)');
    await page.getByLabel('Extra headers').fill('X-Team: security\nX-Tenant: acme');
    await page.getByLabel('Batch: most events').fill('50');
    await page.screenshot({ path: join(SCREENSHOTS, 'portal-stream-edit.png'), fullPage: true });
    await page.getByRole('button', { name: 'Save changes' }).click();
    await page.waitForURL(/notice=updated$/);
    assert.match(await page.locator('.notice.ok').textContent(), /Settings saved/);
    const settings = await page.locator('dl.facts').nth(1).textContent();
    assert.match(settings, /"max_events":50/);
    assert.doesNotMatch(settings, /security/, 'header values are shown masked');

    const after = await (await fetch(`${server.url}/audit_logs/streams/${streamId}`, { headers })).json();
    assert.equal(after.name, 'Acme SIEM (EU)');
    assert.equal(after.config.signing_secret, before.config.signing_secret, 'the secret was kept');
    assert.deepEqual(after.config.headers, { 'X-Team': '****rity', 'X-Tenant': '****acme' });
    assert.equal(after.config.batch.max_events, 50);

    const requests = receiver.headers.length;
    await page.getByRole('button', { name: 'Send test event' }).click();
    await page.waitForURL(/notice=test_delivered/);
    assert.ok(
      receiver.headers.slice(requests).some((h) => h['x-team'] === 'security' && h['x-tenant'] === 'acme'),
      'the new headers reach the destination',
    );
  });

  it('shows the streams API\'s validation errors beside the fields', async () => {
    await page.goto(`${server.url}/portal/streams/new?type=splunk`);
    await page.getByLabel('Name *').fill('Splunk');
    await page.getByLabel('HEC URL *').fill('ftp://splunk.example.com');
    await page.getByLabel('HEC token *').fill('hec-secret-token');
    await page.getByRole('button', { name: 'Create stream' }).click();
    const error = page.locator('[id="config.url-error"]');
    await error.waitFor();
    assert.match(await error.textContent(), /url/i);
    assert.equal(await page.getByLabel('HEC URL *').getAttribute('aria-invalid'), 'true');
    assert.equal(await page.getByLabel('HEC token *').inputValue(), '', 'a secret was sent back');
  });

  it('refuses another organization\'s stream id edited into the URL (404)', async () => {
    const response = await page.goto(`${server.url}/portal/streams/${globexStreamId}`);
    assert.equal(response.status(), 404);
    assert.equal(await page.getByText('Globex SIEM').count(), 0);
  });

  it('deletes the stream after confirming, and the log says who changed it', async () => {
    await page.goto(`${server.url}/portal/streams`);
    await page.getByRole('link', { name: 'Acme SIEM' }).click();
    await page.getByRole('button', { name: 'Delete stream' }).click();
    await page.waitForURL(/\/portal\/streams\?notice=deleted$/);
    assert.match(await page.locator('main').textContent(), /No log streams yet/);
    const headers = { Authorization: `Bearer ${server.apiKey}` };
    const recorded = await (
      await fetch(`${server.url}/audit_logs/events?organization_id=${acme.id}&actions=trailmark.portal.stream.*&order=asc`, { headers })
    ).json();
    assert.deepEqual(
      recorded.data.map((e) => e.action),
      [
        'trailmark.portal.stream.created',
        'trailmark.portal.stream.tested',
        'trailmark.portal.stream.paused',
        'trailmark.portal.stream.resumed',
        'trailmark.portal.stream.replayed',
        'trailmark.portal.stream.updated',
        'trailmark.portal.stream.tested',
        'trailmark.portal.stream.deleted',
      ],
    );
    assert.ok(recorded.data.every((e) => e.actor.type === 'portal_session' && e.actor.name === 'it@acme.test'));
  });
});

// ---------------------------------------------------------------------------------------
// Refused links

describe('refused links', () => {
  it('refuses a second use of a link', async () => {
    const link = await portalLink('audit_logs');
    const first = await newPage();
    assert.equal((await first.goto(link)).status(), 200);
    const second = await newPage();
    const response = await second.goto(link);
    assert.equal(response.status(), 410);
    assert.equal(await second.locator('h1').textContent(), 'This link was already used');
    assert.equal((await second.context().cookies()).length, 0);
    await second.screenshot({ path: join(SCREENSHOTS, 'portal-link-used.png') });
  });

  it('refuses a link opened after it expired', async () => {
    const apiKey = `sk_browser_${randomBytes(12).toString('hex')}`;
    const shortLived = await startServer(apiKey, ['--portal-link-ttl-secs', '1']);
    try {
      const org = await shortLived.workos.organizations.createOrganization({ name: 'Initech' });
      const link = await portalLink('audit_logs', org.id, shortLived);
      await new Promise((r) => setTimeout(r, 2_500));
      const page = await newPage();
      const response = await page.goto(link);
      assert.equal(response.status(), 410);
      assert.equal(await page.locator('h1').textContent(), 'This link has expired');
    } finally {
      await stopServer(shortLived);
    }
  });

  it('refuses a forged link', async () => {
    const page = await newPage();
    const response = await page.goto(`${server.url}/portal?token=${randomBytes(32).toString('hex')}`);
    assert.equal(response.status(), 404);
    assert.equal(await page.locator('h1').textContent(), 'This link is not valid');
  });

  it('makes the SDK raise UnprocessableEntityException for an intent Trailmark does not serve', async () => {
    await assert.rejects(
      server.workos.adminPortal.generateLink({ organization: acme.id, intent: 'sso' }),
      UnprocessableEntityException,
    );
  });

  it('saw no Content-Security-Policy violation on any page', () => {
    assert.deepEqual(cspViolations, []);
  });
});
