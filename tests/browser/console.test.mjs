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
  const { child, port } = await startTrailmark({ apiKey, dataDir, args: extraArgs });
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

let server;
let browser;
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
  browser = await chromium.launch({
    executablePath: CHROMIUM_BIN,
    args: ['--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'],
  });
});

after(async () => {
  await browser?.close();
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
