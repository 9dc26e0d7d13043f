// The operators' console in a real browser: Debian's headless Chromium driven by playwright-core
// (never a downloaded browser), against the real `trailmark` binary, the operator made with
// `trailmark operators create` (password on standard input) beside the running server.
//
// Run from the repository root:   node --test tests/browser/
// Binary under test:              $TRAILMARK_BIN, default <repo>/target/debug/trailmark
// Browser:                        $CHROMIUM_BIN, default /usr/bin/chromium (apt install chromium)
// Screenshots:                    tests/browser/screenshots/ (README's copies: docs/screenshots/)
//
// The tests in the `describe` run in order over one server. The expired-session test starts a
// second server whose sessions end after 1 idle second (`--console-idle-timeout-secs 1`); the
// OpenID Connect tests a third, signing in through a real provider (npm `oidc-provider`, its
// development login and consent pages) run in this process on loopback.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

import { createServer as createNetServer } from 'node:net';

import { chromium } from 'playwright-core';
import Provider from 'oidc-provider';

import { TRAILMARK_BIN, startTrailmark, stopTrailmark } from '../support/trailmark-process.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const CHROMIUM_BIN = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const SCREENSHOTS = join(HERE, 'screenshots');
const EMAIL = 'ops@example.test';
const PASSWORD = `pw-${randomBytes(9).toString('hex')}`;

/** Starts `trailmark serve` over a fresh data directory and makes the operator beside it. */
async function startServer(extraArgs = []) {
  const dataDir = mkdtempSync(join(tmpdir(), 'trailmark-console-'));
  const apiKey = `sk_console_${randomBytes(12).toString('hex')}`;
  const { child, port } = await startTrailmark({
    apiKey,
    dataDir,
    args: ['--allow-private-destinations', ...extraArgs],
  });
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TRAILMARK_')));
  const made = spawnSync(TRAILMARK_BIN, ['operators', 'create', '--data-dir', dataDir, '--email', EMAIL], {
    input: `${PASSWORD}\n`,
    env,
    encoding: 'utf8',
  });
  assert.equal(made.status, 0, made.stderr);
  return { child, dataDir, apiKey, url: `http://127.0.0.1:${port}` };
}

async function stopServer(server) {
  if (!server) return;
  await stopTrailmark(server.child);
  rmSync(server.dataDir, { recursive: true, force: true });
}

/** A stream destination: a local HTTP server that records every envelope it receives. */
function startReceiver() {
  const received = [];
  const receiver = createServer((request, response) => {
    let body = '';
    request.setEncoding('utf8');
    request.on('data', (chunk) => {
      body += chunk;
    });
    request.on('end', () => {
      received.push(...JSON.parse(body));
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end('{}');
    });
  });
  return new Promise((done) => {
    receiver.listen(0, '127.0.0.1', () => {
      done({ server: receiver, received, url: `http://127.0.0.1:${receiver.address().port}/audit-hook` });
    });
  });
}

/** Polls `check` until it returns a truthy value, up to ~20 s. */
async function eventually(what, check) {
  for (let attempt = 0; attempt < 100; attempt += 1) {
    const value = await check();
    if (value) return value;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`never happened: ${what}`);
}

/** The API as an app calls it, with `key`. */
function api(path, key, init = {}) {
  return fetch(`${server.url}${path}`, {
    ...init,
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
  });
}

let server;
let browser;
let receiver;
const cspViolations = [];

async function newPage(viewport = { width: 1100, height: 760 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) cspViolations.push(message.text());
  });
  page.on('dialog', (dialog) => dialog.accept());
  return page;
}

async function signIn(page, srv = server, password = PASSWORD) {
  await page.goto(`${srv.url}/console`);
  await page.waitForURL(`${srv.url}/console/sign_in`);
  await page.getByLabel('E-mail').fill(EMAIL);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

before(async () => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  server = await startServer();
  receiver = await startReceiver();
  browser = await chromium.launch({
    executablePath: CHROMIUM_BIN,
    args: ['--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'],
  });
});

after(async () => {
  await browser?.close();
  receiver?.server.close();
  await stopServer(server);
});

describe('the console', () => {
  let page;

  it('answers a wrong password with the generic error and no session', async () => {
    page = await newPage();
    await signIn(page, server, 'not the password at all');
    assert.equal(await page.locator('#sign-in-error').textContent(), 'Wrong e-mail or password.');
    const cookies = await page.context().cookies();
    assert.equal(cookies.some((c) => c.name === 'trailmark_console'), false);
  });

  it('signs in and creates an organization', async () => {
    await signIn(page);
    await page.waitForURL(`${server.url}/console/organizations`);
    const session = (await page.context().cookies()).find((c) => c.name === 'trailmark_console');
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Strict');
    assert.equal(session.path, '/console');
    await page.getByLabel('Name', { exact: true }).fill('Acme Corp');
    await page.getByLabel(/^Domains/).fill('acme.test');
    await page.getByRole('button', { name: 'Create organization' }).click();
    await page.waitForURL(/\/console\/organizations\/org_[0-9A-Z]{26}\?notice=created$/);
    assert.equal(await page.locator('h1').textContent(), 'Acme Corp');
    await page.screenshot({ path: join(SCREENSHOTS, 'console-organization.png'), fullPage: true });
    await page.goto(`${server.url}/console/organizations`);
    assert.equal(await page.getByRole('link', { name: 'Acme Corp' }).count(), 1);
  });

  it('creates an event schema after checking a sample against it', async () => {
    await page.goto(`${server.url}/console/schemas`);
    await page.getByRole('link', { name: '+ Create an event' }).click();
    await page.getByLabel('Action (e.g. user.login)').fill('user.login');
    await page.getByLabel('Target types').fill('user, team');
    await page
      .getByLabel(/^Metadata JSON Schema/)
      .fill('{"type":"object","properties":{"plan":{"type":"string"}},"required":["plan"]}');
    await page.getByRole('button', { name: 'Check the sample' }).click();
    // The prefilled sample has no `plan`: the check says so, and nothing is saved.
    assert.match(await page.locator('#check-result').textContent(), /does not pass/);
    await page.getByRole('button', { name: 'Save version' }).click();
    await page.waitForURL(`${server.url}/console/schemas/user.login?notice=saved`);
    assert.equal(await page.locator('.versions h2').first().textContent(), 'Version 1');
    await page.screenshot({ path: join(SCREENSHOTS, 'console-schema.png'), fullPage: true });
  });

  it('shows new events on the organization\'s page as they arrive', async () => {
    await page.goto(`${server.url}/console/organizations`);
    await page.getByRole('link', { name: 'Acme Corp' }).click();
    const organization = page.url().split('/').pop();
    assert.equal(await page.locator('table.events').isHidden(), true, 'no events yet');
    const sent = await api('/audit_logs/events', server.apiKey, {
      method: 'POST',
      body: JSON.stringify({
        organization_id: organization,
        event: {
          action: 'user.signed_in',
          occurred_at: new Date().toISOString(),
          actor: { id: 'user_ada', name: 'Ada Lovelace', type: 'user' },
          targets: [{ id: 'team_1', type: 'team' }],
          context: { location: '203.0.113.7' },
        },
      }),
    });
    assert.equal(sent.status, 200);
    const row = page.locator('table.events tbody tr.arrived');
    await row.first().waitFor({ timeout: 10_000 });
    assert.equal(await row.first().locator('td').nth(2).textContent(), 'user.signed_in');
    assert.match(await row.first().locator('td').nth(3).textContent(), /^Ada Lovelace user_ada$/);
  });

  it('configures a log stream manually, through the Admin Portal\'s forms', async () => {
    await page.getByRole('button', { name: 'Configure manually' }).click();
    await page.waitForURL(`${server.url}/portal/streams`);
    await page.getByRole('link', { name: 'Add a stream' }).click();
    await page.getByLabel('Name *').fill('Acme SIEM');
    await page.getByLabel('Endpoint URL *').fill(receiver.url);
    await page.getByLabel('Format').selectOption('json');
    await page.getByRole('button', { name: 'Create stream' }).click();
    // An HTTP stream's signing secret is shown once, then the stream's page.
    await page.getByText('Copy the signing secret now').waitFor();
    await page.getByRole('link', { name: 'Continue' }).click();
    await page.waitForURL(/\/portal\/streams\/log_stream_[0-9A-Z]{26}\?notice=created$/);
    // The stream starts at the end of the log: the first event it delivers is the portal's
    // record of its creation, named for the operator.
    const created = await eventually('the creation delivered', () =>
      receiver.received.find((envelope) => envelope.event.action === 'trailmark.portal.stream.created'),
    );
    assert.equal(created.event.actor.name, EMAIL);
    await page.getByRole('link', { name: '← Back to the app' }).click();
    await page.waitForURL(/\/console\/organizations\/org_[0-9A-Z]{26}$/);
    assert.equal(await page.locator('#streams-heading + div table tbody tr td').first().textContent(), 'Acme SIEM');
  });

  it('creates an API key, shows it once, and revokes it', async () => {
    await page.getByRole('link', { name: 'API keys' }).click();
    await page.getByLabel('Name', { exact: true }).fill('Reporting');
    await page.getByLabel('Scope').selectOption('read');
    await page.getByRole('button', { name: 'Create key' }).click();
    const key = await page.locator('#new-key').textContent();
    assert.match(key, /^sk_/);
    assert.equal(await page.getByRole('button', { name: 'Copy' }).isVisible(), true);
    await page.screenshot({ path: join(SCREENSHOTS, 'console-keys.png'), fullPage: true });
    assert.equal((await api('/organizations', key)).status, 200);
    await page.goto(`${server.url}/console/keys`);
    assert.equal(await page.locator('#new-key').count(), 0, 'shown only once');
    const row = page.locator('#keys tbody tr', { hasText: 'Reporting' });
    await row.getByRole('button', { name: 'Revoke' }).click();
    await page.waitForURL(`${server.url}/console/keys?notice=revoked`);
    assert.equal((await api('/organizations', key)).status, 401);
  });

  it('refuses a form whose CSRF token was forged', async () => {
    await page.goto(`${server.url}/console/organizations`);
    await page.evaluate(() => {
      document.querySelector('#create-organization input[name=csrf]').value = '0'.repeat(64);
    });
    await page.getByLabel('Name', { exact: true }).fill('Forged Inc');
    await page.getByRole('button', { name: 'Create organization' }).click();
    assert.equal(await page.locator('h1').textContent(), 'This form has expired');
    await page.goto(`${server.url}/console/organizations`);
    assert.equal(await page.getByRole('link', { name: 'Forged Inc' }).count(), 0);
  });

  it('shows what the operator did in Trailmark\'s own log', async () => {
    await page.goto(`${server.url}/console/log`);
    const actions = await page.locator('table.events tbody tr td:nth-child(3)').allTextContents();
    assert.deepEqual(actions, [
      'trailmark.api_key.revoked',
      'trailmark.api_key.created',
      'trailmark.portal_link.created',
      'trailmark.schema.created',
      'trailmark.organization.created',
      'trailmark.console.signed_in',
      'trailmark.console.sign_in_failed',
    ]);
  });

  it('reads well on a phone', async () => {
    const phone = await newPage({ width: 390, height: 844 });
    await signIn(phone);
    await phone.waitForURL(`${server.url}/console/organizations`);
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    assert.equal(overflow, false, 'the page scrolls sideways on a phone');
    await phone.context().close();
  });

  it('signs out', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(`${server.url}/console/sign_in?signed_out=1`);
    await page.goto(`${server.url}/console/organizations`);
    await page.waitForURL(`${server.url}/console/sign_in?ended=1`);
  });

  it('broke no Content-Security-Policy rule', () => {
    assert.deepEqual(cspViolations, []);
  });
});

describe('an idle session', () => {
  let shortLived;

  before(async () => {
    shortLived = await startServer(['--console-idle-timeout-secs', '1']);
  });

  after(async () => {
    await stopServer(shortLived);
  });

  it('ends, and the next page asks to sign in again', async () => {
    const page = await newPage();
    await signIn(page, shortLived);
    await page.waitForURL(`${shortLived.url}/console/organizations`);
    await new Promise((r) => setTimeout(r, 2100));
    await page.getByRole('link', { name: 'Event schemas' }).click();
    await page.waitForURL(`${shortLived.url}/console/sign_in?ended=1`);
    assert.match(await page.locator('.notice.ok').textContent(), /Your session has ended/);
    await page.context().close();
  });
});

/** A free loopback port (the provider's issuer URL must be known before it listens). */
function freePort() {
  return new Promise((done) => {
    const probe = createNetServer();
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => done(port));
    });
  });
}

describe('OpenID Connect sign-in', () => {
  let withOidc;
  let idp;
  let issuer;

  before(async () => {
    const port = await freePort();
    issuer = `http://127.0.0.1:${port}`;
    const clientSecret = randomBytes(16).toString('hex');
    withOidc = await startServer([
      '--console-oidc-issuer', issuer,
      '--console-oidc-client-id', 'trailmark-console',
      '--console-oidc-client-secret', clientSecret,
    ]);
    const provider = new Provider(issuer, {
      clients: [{
        client_id: 'trailmark-console',
        client_secret: clientSecret,
        redirect_uris: [`${withOidc.url}/console/oidc/callback`],
      }],
      claims: { openid: ['sub'], email: ['email', 'email_verified'] },
      // The development login page's "login" is the account; its e-mail is the login itself.
      findAccount: async (ctx, sub) => ({
        accountId: sub,
        claims: async () => ({ sub, email: sub, email_verified: true }),
      }),
    });
    idp = provider.listen(port, '127.0.0.1');
  });

  after(async () => {
    idp?.close();
    await stopServer(withOidc);
  });

  /** Signs in at the provider's development pages as `login`, consenting. */
  async function throughTheProvider(page, login) {
    await page.goto(`${withOidc.url}/console/sign_in`);
    await page.getByRole('link', { name: 'Sign in with OpenID Connect' }).click();
    await page.waitForURL(new RegExp(`^${issuer}/interaction/`));
    await page.locator('input[name=login]').fill(login);
    await page.locator('input[name=password]').fill('any password');
    await page.locator('button[type=submit]').click();
    await page.locator('button[type=submit]').click();
  }

  it('signs an operator in through the provider, with PKCE, state and nonce', async () => {
    const page = await newPage();
    await throughTheProvider(page, EMAIL);
    await page.waitForURL(`${withOidc.url}/console/organizations`);
    assert.equal(await page.locator('header .org').textContent(), EMAIL);
    await page.goto(`${withOidc.url}/console/log`);
    const actions = await page.locator('table.events tbody tr td:nth-child(3)').allTextContents();
    assert.equal(actions[0], 'trailmark.console.signed_in');
    await page.context().close();
  });

  it('refuses someone the provider knows but who is no operator', async () => {
    const page = await newPage();
    await throughTheProvider(page, 'stranger@example.test');
    await page.waitForURL(new RegExp(`^${withOidc.url}/console/oidc/callback`));
    assert.equal(
      await page.locator('#sign-in-error').textContent(),
      'No operator has the e-mail address your provider gave.',
    );
    assert.equal((await page.context().cookies()).some((c) => c.name === 'trailmark_console'), false);
    await page.context().close();
  });

  it('refuses a callback whose state is not this browser\'s', async () => {
    const page = await newPage();
    const response = await page.goto(`${withOidc.url}/console/oidc/callback?code=x&state=${'0'.repeat(64)}`);
    assert.equal(response.status(), 403);
    await page.context().close();
  });
});
