// End to end: the real Trailmark binary and the Express example app; the tutorial's five
// actions over HTTP, then the five events read back from Trailmark.
//
// Run from the repository root:   node --test examples/express-app/
// Binary under test:              $TRAILMARK_BIN, default <repo>/target/debug/trailmark
// (started by tests/support/trailmark-process.mjs, as the other JavaScript suites start it).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

import { createApp } from './app.mjs';
import { startTrailmark, stopTrailmark } from '../../tests/support/trailmark-process.mjs';

const USER_AGENT = 'Mozilla/5.0 (express-example-test)';

let server; // the Trailmark child process
let dataDir;
let trailmarkPort;
const apiKey = `sk_test_${randomBytes(16).toString('hex')}`;

/** A call to Trailmark's own API (the Node SDK has no search). */
async function trailmark(method, path, body) {
  const res = await fetch(`http://127.0.0.1:${trailmarkPort}${path}`, {
    method,
    headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(15_000),
  });
  const json = await res.json();
  assert.ok(res.ok, `${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

async function eventsOf(organizationId) {
  const page = await trailmark('GET', `/audit_logs/events?organization_id=${organizationId}&order=asc&limit=100`);
  return page.data;
}

/** Starts the example app on a free port; resolves with its base URL and a closer. */
function startApp(organizationId, trustProxy) {
  const app = createApp({
    apiKey,
    apiHostname: '127.0.0.1',
    port: trailmarkPort,
    https: false,
    organizationId,
    sessionSecret: randomBytes(32).toString('hex'),
    trustProxy,
  });
  return new Promise((done) => {
    const listener = app.listen(0, '127.0.0.1', () =>
      done({ base: `http://127.0.0.1:${listener.address().port}`, close: () => listener.close() }),
    );
  });
}

/** A browser: keeps the session cookie, sends a user agent and a (forged) X-Forwarded-For. */
function browser(base, forwardedFor) {
  let cookie;
  return async (path, form = {}) => {
    const headers = {
      'User-Agent': USER_AGENT,
      'X-Forwarded-For': forwardedFor,
      'Content-Type': 'application/x-www-form-urlencoded',
    };
    if (cookie) headers.Cookie = cookie;
    const res = await fetch(`${base}${path}`, {
      method: 'POST',
      headers,
      body: new URLSearchParams(form).toString(),
      redirect: 'manual',
      signal: AbortSignal.timeout(15_000),
    });
    const set = res.headers.get('set-cookie');
    if (set) cookie = set.split(';')[0];
    return res;
  };
}

const GRACE_TEAMS = [
  { id: 'team_engineering', type: 'team', name: 'Engineering' },
  { id: 'team_platform', type: 'team', name: 'Platform' },
];

describe('the tutorial Express app on Trailmark', () => {
  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'trailmark-express-'));
    ({ child: server, port: trailmarkPort } = await startTrailmark({ apiKey, dataDir }));
  });

  after(async () => {
    await stopTrailmark(server);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('records the five actions with actor, teams, targets and context', async () => {
    const org = (await trailmark('POST', '/organizations', { name: 'Acme' })).id;
    const app = await startApp(org, false);
    try {
      const post = browser(app.base, '198.51.100.77');

      const anonymous = await post('/posts', { title: 'Hello' });
      assert.equal(anonymous.status, 401);
      assert.equal((await anonymous.json()).code, 'audit_no_user');
      assert.deepEqual(await eventsOf(org), [], 'no user, no event');

      assert.equal((await post('/login', { email: 'grace@example.com', password: 'x' })).status, 303);
      assert.equal((await post('/invite', { email: 'bob@example.com' })).status, 201);
      const created = await post('/posts', { title: 'Hello' });
      assert.equal(created.status, 201);
      const { id: postId } = await created.json();
      assert.equal((await post(`/posts/${postId}/delete`)).status, 204);
      assert.equal((await post('/logout')).status, 303);
      assert.equal((await post('/posts', { title: 'After' })).status, 401, 'the session ended');

      const events = await eventsOf(org);
      assert.deepEqual(
        events.map((e) => e.action),
        ['user.login', 'user.invite', 'post.create', 'post.delete', 'user.logout'],
      );
      const expectedTargets = [
        { id: 'user_grace', type: 'user' },
        { id: 'bob@example.com', type: 'user' },
        { id: postId, type: 'post' },
        { id: postId, type: 'post' },
        { id: 'user_grace', type: 'user' },
      ];
      events.forEach((event, i) => {
        assert.deepEqual(event.actor, { id: 'user_grace', type: 'user', name: 'Grace Hopper' }, event.action);
        assert.deepEqual(event.targets, [expectedTargets[i], ...GRACE_TEAMS], event.action);
        assert.equal(event.context.location, '127.0.0.1', 'a forged X-Forwarded-For is ignored');
        assert.equal(event.context.user_agent, USER_AGENT);
        assert.equal(event.organization_id, org);
        assert.equal(event.sequence, i);
      });
    } finally {
      app.close();
    }
  });

  it('takes the client address from X-Forwarded-For only behind a trusted proxy', async () => {
    const org = (await trailmark('POST', '/organizations', { name: 'Behind a proxy' })).id;
    const app = await startApp(org, 'loopback');
    try {
      const post = browser(app.base, '198.51.100.77');
      assert.equal((await post('/login', { email: 'ada@example.com' })).status, 303);
      const [event] = await eventsOf(org);
      assert.equal(event.action, 'user.login');
      assert.equal(event.actor.id, 'user_ada');
      assert.equal(event.context.location, '198.51.100.77');
    } finally {
      app.close();
    }
  });
});
