// Conformance tests: the official `@workos-inc/node` SDK (11.x, from npm) against a real
// Trailmark server.
//
// Each run starts one `trailmark serve` on an OS-assigned port with a fresh data directory
// and a random bootstrap API key, points the unmodified SDK at it, and checks the wire
// contract in /work/shared/reference/workos-wire.md (§ numbers below refer to it).
//
// Run from the repository root:   node --test conformance/node/
// Binary under test:              $TRAILMARK_BIN, default <repo>/target/debug/trailmark
// Storage:                        $TRAILMARK_TEST_DATABASE_URL (a fresh database), default SQLite
//
// The tests in this file run in order and share one server; later tests use the schema
// versions created by the schema test (versions 1 and 2 of `user.signed_in`). The export
// tests (6x) share one seeded organization, created by whichever of them runs first.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';

import {
  WorkOS,
  BadRequestException,
  GenericServerException,
  NotFoundException,
  UnauthorizedException,
  UnprocessableEntityException,
} from '@workos-inc/node';

import { startTrailmark, stopTrailmark } from '../../tests/support/trailmark-process.mjs';

const STARTUP_TIMEOUT_MS = 30_000;

/** `YYYY-MM-DDTHH:MM:SS.mmmZ`, the only timestamp form the server may emit (§2, SPEC §2). */
const TIMESTAMP_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const UNKNOWN_ORG = 'org_01HZZZZZZZZZZZZZZZZZZZZZZZ';
const ACTION = 'user.signed_in';

/** Schema v1 of `user.signed_in`, in the Node SDK's simplified input form. */
const SCHEMA_V1 = {
  action: ACTION,
  targets: [{ type: 'team', metadata: { plan: 'string' } }],
  actor: { metadata: { role: 'string' } },
  metadata: { ip_count: 'number' },
};
/** Schema v2: v1 plus one more actor metadata property. */
const SCHEMA_V2 = {
  action: ACTION,
  targets: [{ type: 'team', metadata: { plan: 'string' } }],
  actor: { metadata: { role: 'string', department: 'string' } },
  metadata: { ip_count: 'number' },
};

// ---------------------------------------------------------------------------------------
// Server process management

let server; // ChildProcess
let dataDir;
let port;
let apiKey;
let baseUrl;
let workos;

/** Starts the server under test; on PostgreSQL (scripts/test) over a fresh database. */
async function startServer() {
  const database = process.env.TRAILMARK_TEST_DATABASE_URL;
  const started = await startTrailmark({
    apiKey,
    dataDir,
    args: database ? ['--database', database] : [],
  });
  server = started.child;
  return started.port;
}

const stopServer = () => stopTrailmark(server);

// ---------------------------------------------------------------------------------------
// Helpers

/** An SDK client pointed at the server under test (§1.1). */
function client(key = apiKey) {
  return new WorkOS(key, { apiHostname: '127.0.0.1', port, https: false });
}

/**
 * A raw HTTP call. Returns status, headers, the raw text and the parsed JSON (or
 * `undefined` when the body is not JSON).
 */
async function raw(method, path, { body, headers = {}, key = apiKey } = {}) {
  const h = { ...headers };
  if (key !== null) h.Authorization = `Bearer ${key}`;
  if (body !== undefined) h['Content-Type'] = 'application/json';
  const res = await fetch(`${baseUrl}${path}`, {
    method,
    headers: h,
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** Human-readable description of a raw response, for assertion messages. */
function show(method, path, r) {
  return `${method} ${path} -> ${r.status} content-type=${r.headers.get('content-type')} x-request-id=${r.headers.get('x-request-id')} body=${r.text.slice(0, 500)}`;
}

/** Rejects unless `promise` rejects with an instance of `Cls`; returns the error. */
async function expectReject(promise, Cls, what) {
  let err;
  try {
    await promise;
  } catch (e) {
    err = e;
  }
  assert.ok(err, `${what}: expected ${Cls.name}, but the call succeeded`);
  assert.ok(
    err instanceof Cls,
    `${what}: expected ${Cls.name}, got ${err?.name} (status ${err?.status}): ${err?.message}` +
      (err?.rawData ? ` rawData=${JSON.stringify(err.rawData)}` : '') +
      (err?.rawBody ? ` rawBody=${String(err.rawBody).slice(0, 300)}` : ''),
  );
  return err;
}

/** A valid event for `user.signed_in` (schema v1), in the SDK's input form. */
function validEvent(extra = {}) {
  return {
    action: ACTION,
    version: 1,
    occurredAt: new Date(),
    actor: { id: 'user_01', type: 'user', name: 'Jon Smith', metadata: { role: 'admin' } },
    targets: [{ id: 'team_01', type: 'team', name: 'Core', metadata: { plan: 'pro' } }],
    context: { location: '203.0.113.7', userAgent: 'Mozilla/5.0 (conformance)' },
    metadata: { ip_count: 3 },
    ...extra,
  };
}

/** The same event as the Node SDK puts it on the wire (§2.1 "Exact JSON each SDK sends"). */
function wireBody(orgId, occurredAt = new Date()) {
  return {
    event: {
      action: ACTION,
      version: 1,
      occurred_at: occurredAt.toISOString(),
      actor: { id: 'user_01', type: 'user', name: 'Jon Smith', metadata: { role: 'admin' } },
      targets: [{ id: 'team_01', type: 'team', name: 'Core', metadata: { plan: 'pro' } }],
      context: { location: '203.0.113.7', user_agent: 'Mozilla/5.0 (conformance)' },
      metadata: { ip_count: 3 },
    },
    organization_id: orgId,
  };
}

/**
 * The receipt in a create-event answer: either nested as `receipt` or flattened beside
 * `success` (SPEC §4.1: "a receipt for every event (its id, its sequence number …)").
 */
function receiptOf(body) {
  if (body && typeof body.receipt === 'object' && body.receipt !== null) return body.receipt;
  return body;
}

async function newOrg(name) {
  return workos.organizations.createOrganization({ name });
}

// ---------------------------------------------------------------------------------------
// Export helpers (§2.2, §2.3, §8)

/** Trailmark's CSV layout (§8 leaves it to the server; this is the one Trailmark documents). */
const EXPORT_COLUMNS = [
  'id', 'organization_id', 'sequence', 'occurred_at', 'received_at', 'action', 'version',
  'actor_id', 'actor_type', 'actor_name', 'actor_metadata', 'targets', 'location',
  'user_agent', 'metadata',
];
/** Columns holding compact JSON, compared parsed (the server may order keys its own way). */
const EXPORT_JSON_COLUMNS = new Set(['actor_metadata', 'targets', 'metadata']);
const EXPORT_READY_TIMEOUT_MS = 10_000;
const UNKNOWN_EXPORT = 'audit_log_export_01HZZZZZZZZZZZZZZZZZZZZZZZ';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * A strict RFC 4180 parser: records end with CRLF (a bare CR or LF outside quotes is an
 * error), quoted fields double their quotes, and a quote may only open or close a field.
 * Strict on purpose: a lenient parser would hide exactly the quoting bugs this checks for.
 */
function parseCsv(text) {
  const rows = [];
  let row = [];
  let i = 0;
  const where = () => `at offset ${i} (…${JSON.stringify(text.slice(Math.max(0, i - 40), i + 40))}…)`;
  for (;;) {
    // One field, starting at i.
    let field = '';
    if (text[i] === '"') {
      i += 1;
      for (;;) {
        if (i >= text.length) throw new Error(`unterminated quoted field ${where()}`);
        if (text[i] === '"') {
          if (text[i + 1] !== '"') break;
          i += 1; // "" is one quote
        }
        field += text[i];
        i += 1;
      }
      i += 1; // the closing quote
    } else {
      while (i < text.length && !',\r\n'.includes(text[i])) {
        if (text[i] === '"') throw new Error(`quote inside an unquoted field ${where()}`);
        field += text[i];
        i += 1;
      }
    }
    row.push(field);
    // What ends it: a comma, CRLF, or nothing else.
    if (text[i] === ',') {
      i += 1;
    } else if (text[i] === '\r' && text[i + 1] === '\n') {
      rows.push(row);
      row = [];
      i += 2;
      if (i === text.length) return rows;
    } else if (i >= text.length) {
      throw new Error('the last record does not end with CRLF');
    } else {
      throw new Error(`bare CR/LF, or text after a closing quote, ${where()}`);
    }
  }
}

/** What a CSV cell must hold for `s`: a leading `'` defuses spreadsheet formulas. */
function spreadsheetSafe(s) {
  return /^[=+\-@]/.test(s) ? `'${s}` : s;
}

/**
 * Polls `getExport` until the export leaves `pending`; fails if it does not within 10 s or
 * ends in any state but `ready`. Returns the SDK-parsed export.
 */
async function waitForExport(id) {
  const deadline = Date.now() + EXPORT_READY_TIMEOUT_MS;
  let last;
  for (;;) {
    last = await workos.auditLogs.getExport(id);
    if (last.state !== 'pending') break;
    if (Date.now() > deadline) {
      assert.fail(`export ${id} still pending after ${EXPORT_READY_TIMEOUT_MS / 1000} s: ${JSON.stringify(last)}`);
    }
    await sleep(100);
  }
  assert.equal(last.state, 'ready', `export ${id} ended in state ${last.state}: ${JSON.stringify(last)}`);
  return last;
}

/** Downloads a signed export link with plain HTTP: no Authorization header, no SDK. */
async function download(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(15_000) });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/**
 * Creates an export through the SDK, waits for it, downloads and parses it. Returns the
 * export, the raw CSV text and the rows as objects keyed by the (checked) header.
 */
async function exportCsv(options) {
  const created = await workos.auditLogs.createExport(options);
  const ready = await waitForExport(created.id);
  const d = await download(ready.url);
  assert.equal(d.status, 200, `GET ${ready.url} (no API key) -> ${d.status}: ${d.text.slice(0, 500)}`);
  const [header, ...records] = parseCsv(d.text);
  assert.deepEqual(header, EXPORT_COLUMNS, 'CSV header row');
  for (const r of records) {
    assert.equal(r.length, EXPORT_COLUMNS.length, `every record has ${EXPORT_COLUMNS.length} fields: ${JSON.stringify(r)}`);
  }
  const rows = records.map((r) => Object.fromEntries(EXPORT_COLUMNS.map((c, k) => [c, r[k]])));
  return { created, ready, text: d.text, headers: d.headers, rows };
}

/** Every event of `orgId` from the search API, oldest first (one page: the seed has < 100). */
async function searchEvents(orgId) {
  const path = `/audit_logs/events?organization_id=${orgId}&order=asc&limit=100`;
  const r = await raw('GET', path);
  assert.equal(r.status, 200, show('GET', path, r));
  assert.equal(r.json.object, 'list', show('GET', path, r));
  assert.equal(r.json.list_metadata?.after ?? null, null, `one page expected: ${r.text.slice(0, 300)}`);
  return r.json.data;
}

const EXPORT_ACTORS = [
  { id: 'user_alice', type: 'user', name: 'Alice Example', metadata: { role: 'admin' } },
  // A comma: the CSV cell must be quoted, and the name filter must match it whole.
  { id: 'user_bob', type: 'user', name: 'Smith, Bob', metadata: { role: 'member' } },
  // A formula: the CSV cell must start with `'`; the quotes inside must be doubled.
  { id: 'user_formula', type: 'user', name: '=HYPERLINK("https://evil.test","x")', metadata: { role: 'guest' } },
];

/**
 * One organization with 15 events inside [rangeStart, rangeEnd], plus one before and one
 * after the range (and one in another organization inside it) that no export may contain.
 * occurred_at is deliberately not in send order, so "log order" (sequence) and "time order"
 * differ and the export's order is observable.
 */
async function seedExportOrg() {
  const org = await newOrg('Exports Inc');
  const other = await newOrg('Exports Elsewhere Inc');
  const base = new Date(Math.floor(Date.now() / 60_000) * 60_000 - 2 * 3_600_000); // 2 h ago, whole minute
  const at = (minutes, ms = 0) => new Date(base.getTime() + minutes * 60_000 + ms);
  const rangeStart = base;
  const rangeEnd = at(20);

  const inRange = [];
  for (let i = 0; i < 15; i += 1) {
    const actor = EXPORT_ACTORS[i % 3];
    const occurredAt = at(1 + ((i * 7) % 15), 100 + i); // minutes 1..15, a permutation
    const context = { location: `198.51.100.${i + 1}`, userAgent: `conformance-node/${i}` };
    let event;
    switch (Math.floor(i / 3) % 3) {
      case 0: // user.signed_in has schema v1 (test 2): match it exactly
        event = {
          action: ACTION,
          version: 1,
          occurredAt,
          actor,
          targets: [{ id: 'team_01', type: 'team', name: 'Core', metadata: { plan: 'pro' } }],
          context,
          metadata: { ip_count: i },
        };
        break;
      case 1:
        event = {
          action: 'user.signed_out',
          occurredAt,
          actor,
          targets: [{ id: 'team_01', type: 'team' }],
          context,
          metadata: { reason: 'logout', n: i },
        };
        break;
      default:
        event = {
          action: 'document.exported',
          occurredAt,
          actor,
          targets: [{ id: `doc_${i}`, type: 'document', name: 'Q3, "final"' }],
          context,
          metadata: { format: 'pdf', pages: i, signed: true },
        };
    }
    inRange.push(event);
  }
  const outside = (occurredAt) => ({
    action: 'user.signed_out',
    occurredAt,
    actor: EXPORT_ACTORS[1],
    targets: [{ id: 'team_01', type: 'team' }],
    context: { location: '198.51.100.200' },
    metadata: { reason: 'outside' },
  });

  // Send order: the out-of-range events in the middle, so their sequences sit between
  // exported ones.
  for (const [k, ev] of inRange.entries()) {
    await workos.auditLogs.createEvent(org.id, ev);
    if (k === 5) await workos.auditLogs.createEvent(org.id, outside(at(-30)));
    if (k === 10) await workos.auditLogs.createEvent(org.id, outside(at(25)));
  }
  await workos.auditLogs.createEvent(other.id, { ...inRange[0], occurredAt: at(10, 999) });

  // Ids and sequences come from the search API (createEvent returns nothing); occurred_at
  // is unique per event, so it joins the two.
  const stored = await searchEvents(org.id);
  assert.equal(stored.length, 17, `the search API must return all 17 events: ${JSON.stringify(stored.map((e) => e.id))}`);
  const byTime = new Map(stored.map((e) => [e.occurred_at, e]));
  const events = inRange
    .map((ingested) => {
      const s = byTime.get(ingested.occurredAt.toISOString());
      assert.ok(s, `event at ${ingested.occurredAt.toISOString()} is missing from the search API`);
      return { ingested, stored: s };
    })
    .sort((a, b) => a.stored.sequence - b.stored.sequence);
  return { org, other, rangeStart, rangeEnd, events, stored };
}

let exportSeedPromise;
function exportSeed() {
  exportSeedPromise ??= seedExportOrg();
  return exportSeedPromise;
}

/** The ids of the seeded in-range events that satisfy `pred`, in log order. */
function expectedIds(seed, pred = () => true) {
  return seed.events.filter(({ ingested }) => pred(ingested)).map(({ stored }) => stored.id);
}

// ---------------------------------------------------------------------------------------

describe('@workos-inc/node 11.x against trailmark', () => {
  before(
    async () => {
      dataDir = mkdtempSync(join(tmpdir(), 'trailmark-conformance-node-'));
      apiKey = `sk_test_${randomBytes(16).toString('hex')}`;
      port = await startServer();
      baseUrl = `http://127.0.0.1:${port}`;
      workos = client();
    },
    { timeout: STARTUP_TIMEOUT_MS + 5_000 },
  );

  after(async () => {
    await stopServer();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  // -------------------------------------------------------------------------------------
  it('1. organizations: create, get, list (§4)', async () => {
    const org = await workos.organizations.createOrganization({
      name: 'Acme',
      domainData: [{ domain: 'acme.test', state: 'verified' }],
    });
    assert.match(org.id, /^org_/, 'organization id must start with org_');
    assert.equal(org.object, 'organization');
    assert.equal(org.name, 'Acme');
    assert.ok(Array.isArray(org.domains), 'domains must be an array');
    assert.equal(org.domains.length, 1, `one domain expected, got ${JSON.stringify(org.domains)}`);
    const [dom] = org.domains;
    assert.equal(dom.domain, 'acme.test');
    assert.equal(dom.state, 'verified');
    assert.equal(dom.object, 'organization_domain');
    assert.equal(typeof dom.id, 'string');
    assert.equal(dom.organizationId, org.id);
    assert.match(org.createdAt, TIMESTAMP_RE, 'created_at format');
    assert.match(org.updatedAt, TIMESTAMP_RE, 'updated_at format');

    const got = await workos.organizations.getOrganization(org.id);
    assert.equal(got.id, org.id);
    assert.equal(got.name, 'Acme');
    assert.deepEqual(got.domains.map((d) => d.domain), ['acme.test']);

    const list = await workos.organizations.listOrganizations();
    assert.equal(list.object, 'list');
    assert.ok(
      list.data.some((o) => o.id === org.id && o.name === 'Acme'),
      `listOrganizations() must include ${org.id}; got ${JSON.stringify(list.data.map((o) => o.id))}`,
    );

    // Raw shape: every key the SDKs need (§4, §9.8), and the list envelope (§4, §9.6).
    const path = `/organizations/${org.id}`;
    const r = await raw('GET', path);
    assert.equal(r.status, 200, show('GET', path, r));
    for (const k of [
      'object', 'id', 'name', 'domains', 'metadata', 'external_id',
      'allow_profiles_outside_organization', 'created_at', 'updated_at',
    ]) {
      assert.ok(k in r.json, `organization is missing key "${k}": ${r.text}`);
    }
    assert.deepEqual(r.json.metadata, {}, 'metadata defaults to {}');
    assert.equal(r.json.external_id, null, 'external_id defaults to null');
    assert.equal(typeof r.json.allow_profiles_outside_organization, 'boolean');
    for (const k of ['object', 'id', 'organization_id', 'domain', 'created_at', 'updated_at']) {
      assert.ok(k in r.json.domains[0], `organization_domain is missing key "${k}": ${r.text}`);
    }

    const lr = await raw('GET', '/organizations');
    assert.equal(lr.status, 200, show('GET', '/organizations', lr));
    assert.equal(lr.json.object, 'list', show('GET', '/organizations', lr));
    assert.ok(Array.isArray(lr.json.data), show('GET', '/organizations', lr));
    assert.ok(
      lr.json.list_metadata && 'before' in lr.json.list_metadata && 'after' in lr.json.list_metadata,
      `list_metadata.before/after must be present: ${lr.text}`,
    );
    assert.equal(lr.json.list_metadata.after, null, 'a single page must end with after: null');
  });

  // -------------------------------------------------------------------------------------
  it('2. schemas: create is idempotent on content, new content makes v2, list newest first (§2.4, §2.5, §11)', async () => {
    const v1 = await workos.auditLogs.createSchema(SCHEMA_V1);
    assert.equal(v1.object, 'audit_log_schema');
    assert.equal(v1.version, 1, 'first schema of a new action is version 1');
    assert.deepEqual(
      v1.targets,
      [{ type: 'team', metadata: { plan: 'string' } }],
      'targets are echoed',
    );
    assert.deepEqual(v1.actor, { metadata: { role: 'string' } }, 'actor metadata is echoed');
    assert.deepEqual(v1.metadata, { ip_count: 'number' }, 'event metadata is echoed');
    assert.match(v1.createdAt, TIMESTAMP_RE, 'created_at format');

    const again = await workos.auditLogs.createSchema(SCHEMA_V1);
    assert.equal(again.version, 1, 'posting the identical schema again must return version 1, not 2 (§11)');
    assert.equal(again.createdAt, v1.createdAt, 'the identical schema returns the stored version 1 itself');

    const v2 = await workos.auditLogs.createSchema(SCHEMA_V2);
    assert.equal(v2.version, 2, 'a different schema creates version 2');
    assert.deepEqual(v2.actor, { metadata: { role: 'string', department: 'string' } });

    const list = await workos.auditLogs.listSchemas(ACTION);
    assert.equal(list.object, 'list');
    assert.deepEqual(
      list.data.map((s) => s.version),
      [2, 1],
      'listSchemas returns both versions, newest first (SDK sends order=desc)',
    );
    assert.equal(list.listMetadata.after ?? null, null, 'last page has list_metadata.after null');

    const asc = await workos.auditLogs.listSchemas(ACTION, { order: 'asc' });
    assert.deepEqual(asc.data.map((s) => s.version), [1, 2], 'order=asc returns oldest first');
  });

  // -------------------------------------------------------------------------------------
  it('3. createEvent succeeds; Idempotency-Key replays the same receipt (§2.1)', async () => {
    const org = await newOrg('Events Inc');

    // Plain SDK call (the SDK adds its own `workos-node-<uuid>` key).
    await workos.auditLogs.createEvent(org.id, validEvent());

    // Explicit idempotency key, twice.
    const idempotencyKey = `conformance-${randomUUID()}`;
    const ev = validEvent({ occurredAt: new Date('2026-08-01T10:00:00.000Z') });
    await workos.auditLogs.createEvent(org.id, ev, { idempotencyKey });
    await workos.auditLogs.createEvent(org.id, ev, { idempotencyKey });

    // Raw: same key + same body twice -> identical 200 answers with one receipt.
    const rawOrg = await newOrg('Receipts Inc');
    const body = wireBody(rawOrg.id, new Date('2026-08-02T10:00:00.000Z'));
    const key = `conformance-raw-${randomUUID()}`;
    const path = '/audit_logs/events';
    const first = await raw('POST', path, { body, headers: { 'Idempotency-Key': key } });
    const second = await raw('POST', path, { body, headers: { 'Idempotency-Key': key } });
    assert.equal(first.status, 200, show('POST', path, first));
    assert.equal(second.status, 200, show('POST', path, second));
    assert.ok(first.json, `body must be JSON: ${first.text}`);
    assert.deepEqual(second.json, first.json, 'the replay must return the identical JSON body');
    assert.equal(first.json.success, true, `body must have success: true: ${first.text}`);

    const r1 = receiptOf(first.json);
    assert.equal(typeof r1.id, 'string', `receipt id missing: ${first.text}`);
    assert.match(r1.id, /^event_/, `receipt id must start with event_: ${first.text}`);
    assert.equal(typeof r1.sequence, 'number', `receipt sequence must be a number: ${first.text}`);
    assert.deepEqual(receiptOf(second.json), r1, 'both answers carry the same receipt');

    // A different key with the same body is a new event (§2.1 inference 3): new id, and the
    // very next sequence number in this organization's log, which also shows the replay
    // above stored nothing.
    const third = await raw('POST', path, {
      body,
      headers: { 'Idempotency-Key': `conformance-raw-${randomUUID()}` },
    });
    assert.equal(third.status, 200, show('POST', path, third));
    const r3 = receiptOf(third.json);
    assert.notEqual(r3.id, r1.id, 'a new key makes a new event');
    assert.equal(
      r3.sequence,
      r1.sequence + 1,
      `the next event in the org's log gets the next sequence (replay must not have stored a second event): first=${first.text} third=${third.text}`,
    );
  });

  // -------------------------------------------------------------------------------------
  it('4a. an event the schema rejects -> 400 BadRequestException invalid_audit_log_event (§2.1, §5)', async () => {
    const org = await newOrg('Bad Targets Inc');
    const bad = validEvent({ targets: [{ id: 'inv_01', type: 'invoice' }] });
    const err = await expectReject(
      workos.auditLogs.createEvent(org.id, bad),
      BadRequestException,
      'target type "invoice" not in user.signed_in v1',
    );
    assert.equal(err.code, 'invalid_audit_log_event');
    assert.ok(Array.isArray(err.errors), `errors must be an array: ${JSON.stringify(err.errors)}`);
    assert.ok(
      err.errors.some((e) => typeof e.instancePath === 'string' && e.instancePath.startsWith('/targets')),
      `errors must have an item whose instancePath points into /targets: ${JSON.stringify(err.errors)}`,
    );
    assert.ok(err.requestID, 'the SDK reads X-Request-ID into requestID');

    // Raw: the status really is 400 (the SDK labels any status with code+errors as 400).
    const body = wireBody(org.id);
    body.event.targets = [{ id: 'inv_01', type: 'invoice' }];
    const r = await raw('POST', '/audit_logs/events', { body });
    assert.equal(r.status, 400, show('POST', '/audit_logs/events', r));
    assert.equal(typeof r.json.message, 'string', r.text);
    assert.equal(r.json.code, 'invalid_audit_log_event', r.text);
    assert.ok(!('error' in r.json), `no "error" key in error bodies (§9.5): ${r.text}`);
  });

  it('4b. an event missing action / actor id -> 422 UnprocessableEntityException (§2.1, §5)', async () => {
    const org = await newOrg('Partial Inc');
    const partial = {
      // no action
      occurredAt: new Date(),
      actor: { type: 'user' }, // no id
      targets: [{ id: 'team_01', type: 'team' }],
      context: { location: '203.0.113.7' },
    };
    const err = await expectReject(
      workos.auditLogs.createEvent(org.id, partial),
      UnprocessableEntityException,
      'event without action and actor.id',
    );
    assert.ok(err.requestID, 'the SDK reads X-Request-ID into requestID');
    // With `errors`, the SDK lists each errors[].code; an item without `code` shows "undefined".
    assert.ok(!/undefined/.test(err.message), `every 422 errors[] item needs a code (§5): ${err.message}`);

    // Raw: each missing field is named (§2.1: errors [{code:"required", field:"event.action"}]).
    for (const [field, mutate] of [
      ['event.action', (b) => delete b.event.action],
      ['event.actor.id', (b) => delete b.event.actor.id],
    ]) {
      const body = wireBody(org.id);
      mutate(body);
      const r = await raw('POST', '/audit_logs/events', { body });
      assert.equal(r.status, 422, show('POST', '/audit_logs/events', r));
      assert.equal(typeof r.json?.message, 'string', r.text);
      assert.ok(Array.isArray(r.json.errors), `422 body needs errors[]: ${r.text}`);
      assert.ok(
        r.json.errors.some((e) => e.field === field && e.code === 'required'),
        `422 errors must contain {code:"required", field:"${field}"}: ${r.text}`,
      );
    }
  });

  it('4c. unknown organization -> 404 NotFoundException (§2.1, §4, §5)', async () => {
    const err = await expectReject(
      workos.auditLogs.createEvent(UNKNOWN_ORG, validEvent()),
      NotFoundException,
      `createEvent for ${UNKNOWN_ORG}`,
    );
    assert.ok(err.requestID, 'the SDK reads X-Request-ID into requestID');
    assert.ok(
      err.message.includes(UNKNOWN_ORG),
      `the 404 message names the organization (§2.1 "Organization not found: 'org_…'."): ${err.message}`,
    );

    await expectReject(
      workos.organizations.getOrganization(UNKNOWN_ORG),
      NotFoundException,
      `getOrganization(${UNKNOWN_ORG})`,
    );

    const r = await raw('POST', '/audit_logs/events', { body: wireBody(UNKNOWN_ORG) });
    assert.equal(r.status, 404, show('POST', '/audit_logs/events', r));
    assert.equal(typeof r.json?.message, 'string', r.text);
  });

  it('4d. wrong API key -> 401 UnauthorizedException (§1.4, §5)', async () => {
    const wrong = client('sk_test_wrong');
    const err = await expectReject(
      wrong.organizations.listOrganizations(),
      UnauthorizedException,
      'listOrganizations with sk_test_wrong',
    );
    assert.ok(err.requestID, 'the SDK reads X-Request-ID into requestID');
    await expectReject(
      wrong.auditLogs.createEvent(UNKNOWN_ORG, validEvent()),
      UnauthorizedException,
      'createEvent with sk_test_wrong',
    );
    await expectReject(
      wrong.auditLogs.createSchema(SCHEMA_V1),
      UnauthorizedException,
      'createSchema with sk_test_wrong',
    );
  });

  // -------------------------------------------------------------------------------------
  it('5. every API response has JSON content-type and X-Request-ID (§2, §5, SPEC §2)', async () => {
    const org = await newOrg('Headers Inc');
    const exportBody = (orgId, rangeStart, rangeEnd) => ({
      organization_id: orgId,
      range_start: rangeStart,
      range_end: rangeEnd,
    });
    const cases = [
      // [label, method, path, options, expected status (number, or predicate)]
      ['list organizations', 'GET', '/organizations', {}, 200],
      ['get organization', 'GET', `/organizations/${org.id}`, {}, 200],
      ['create organization', 'POST', '/organizations', { body: { name: 'Raw Org' } }, 201],
      ['create event', 'POST', '/audit_logs/events', { body: wireBody(org.id) }, 200],
      ['list schemas', 'GET', `/audit_logs/actions/${ACTION}/schemas`, {}, 200],
      ['create export', 'POST', '/audit_logs/exports', { body: exportBody(org.id, '2026-01-01T00:00:00.000Z', '2026-01-02T00:00:00.000Z') }, 201],
      ['export, inverted range', 'POST', '/audit_logs/exports', { body: exportBody(org.id, '2026-01-02T00:00:00.000Z', '2026-01-01T00:00:00.000Z') }, 400],
      ['unknown export', 'GET', `/audit_logs/exports/${UNKNOWN_EXPORT}`, {}, 404],
      ['search events', 'GET', `/audit_logs/events?organization_id=${org.id}&order=asc&limit=100`, {}, 200],
      ['unknown organization', 'GET', `/organizations/${UNKNOWN_ORG}`, {}, 404],
      ['unknown route', 'GET', '/no/such/route', {}, 404],
      ['unknown route, no key', 'GET', '/no/such/route', { key: null }, (s) => s === 401 || s === 404],
      ['wrong method on a known route', 'DELETE', '/audit_logs/events', {}, (s) => s === 404 || s === 405],
      ['missing Authorization', 'GET', '/organizations', { key: null }, 401],
      ['wrong key', 'POST', '/audit_logs/events', { key: 'sk_test_wrong', body: wireBody(org.id) }, 401],
      ['malformed JSON body', 'POST', '/audit_logs/events', { body: '{"event": ' }, (s) => s === 400 || s === 422],
      ['empty JSON object body', 'POST', '/audit_logs/events', { body: {} }, 422],
    ];

    const problems = [];
    for (const [label, method, path, opts, expected] of cases) {
      const r = await raw(method, path, opts);
      const line = `${label}: ${show(method, path, r)}`;
      const statusOk = typeof expected === 'function' ? expected(r.status) : r.status === expected;
      if (!statusOk) problems.push(`unexpected status — ${line}`);
      if (!(r.headers.get('content-type') || '').includes('application/json')) {
        problems.push(`content-type is not application/json — ${line}`);
      }
      if (!r.headers.get('x-request-id')) problems.push(`no X-Request-ID header — ${line}`);
      if (r.json === undefined) problems.push(`body is not JSON — ${line}`);
      else if (r.status >= 400 && typeof r.json.message !== 'string') {
        problems.push(`error body has no "message" string — ${line}`);
      }
    }
    assert.deepEqual(problems, [], `\n${problems.join('\n')}`);
  });

  // -------------------------------------------------------------------------------------
  it('6a. createExport -> pending/ready audit_log_export; getExport until ready gives a signed url (§2.2, §2.3)', async () => {
    const seed = await exportSeed();
    const created = await workos.auditLogs.createExport({
      organizationId: seed.org.id,
      rangeStart: seed.rangeStart,
      rangeEnd: seed.rangeEnd,
    });
    assert.equal(created.object, 'audit_log_export');
    assert.match(created.id, /^audit_log_export_/, `export id: ${JSON.stringify(created)}`);
    assert.ok(['pending', 'ready'].includes(created.state), `a new export is pending (or already ready): ${JSON.stringify(created)}`);
    assert.match(created.createdAt, TIMESTAMP_RE, 'created_at format');
    assert.match(created.updatedAt, TIMESTAMP_RE, 'updated_at format');
    if (created.state === 'pending') {
      assert.equal(created.url ?? null, null, `no url while pending (§2.2): ${JSON.stringify(created)}`);
    }

    const ready = await waitForExport(created.id);
    assert.equal(ready.id, created.id);
    assert.equal(ready.createdAt, created.createdAt, 'created_at does not change');
    assert.equal(typeof ready.url, 'string', `a ready export has a url, and the SDK exposes it: ${JSON.stringify(ready)}`);
    const url = new URL(ready.url);
    assert.equal(
      `${url.origin}${url.pathname}`,
      `${baseUrl}/audit_logs/exports/${created.id}/download`,
      `the url is Trailmark's own signed download link: ${ready.url}`,
    );
    assert.ok(url.searchParams.get('signature'), `the url is signed: ${ready.url}`);
    // §2.3: the link expires after 10 minutes (allow a little clock slack either way).
    const expires = Number(url.searchParams.get('expires'));
    const now = Date.now() / 1000;
    assert.ok(
      expires > now + 540 && expires <= now + 610,
      `expires=${expires} must be about 10 minutes from now (${Math.round(now)}): ${ready.url}`,
    );

    // Raw: the Trailmark keys the SDK drops.
    const path = `/audit_logs/exports/${created.id}`;
    const r = await raw('GET', path);
    assert.equal(r.status, 200, show('GET', path, r));
    assert.equal(r.json.state, 'ready', show('GET', path, r));
    assert.equal(r.json.organization_id, seed.org.id, show('GET', path, r));
    assert.equal(r.json.format, 'csv', `csv is the default format: ${r.text}`);
    assert.equal(r.json.row_count, 15, `row_count counts the exported events: ${r.text}`);
    // §2.3: every GET renews the link.
    const renewed = Number(new URL(r.json.url).searchParams.get('expires'));
    assert.ok(renewed >= expires, `a later GET must not shorten the link: ${expires} then ${renewed}`);
  });

  it('6b. the downloaded CSV holds exactly the ingested events, in log order, RFC 4180-quoted (§2.3, §8)', async () => {
    const seed = await exportSeed();
    const { ready, text, headers, rows } = await exportCsv({
      organizationId: seed.org.id,
      rangeStart: seed.rangeStart,
      rangeEnd: seed.rangeEnd,
    });
    assert.match(headers.get('content-type') || '', /^text\/csv/, 'the download is served as text/csv');

    // Not only parseable: the two awkward names are quoted, with inner quotes doubled.
    assert.ok(text.includes(',"Smith, Bob",'), 'a name with a comma is a quoted cell');
    assert.ok(
      text.includes(`,"'=HYPERLINK(""https://evil.test"",""x"")",`),
      "a name starting with = gets a leading ' and its quotes doubled",
    );

    // Same events (the two outside the range and the other organization's are not there),
    // in sequence order, with the ids the search API reports.
    assert.equal(rows.length, 15, `15 events in range, got ${rows.length}: ${JSON.stringify(rows.map((r) => r.id))}`);
    assert.deepEqual(rows.map((r) => r.id), expectedIds(seed), 'the export lists the in-range events in log order');
    const inRangeSearch = seed.stored
      .filter((e) => e.occurred_at >= seed.rangeStart.toISOString() && e.occurred_at <= seed.rangeEnd.toISOString())
      .map((e) => e.id);
    assert.deepEqual(rows.map((r) => r.id), inRangeSearch, 'export ids = search API ids (order=asc) within the range');
    const seqs = rows.map((r) => Number(r.sequence));
    assert.ok(seqs.every((s, k) => k === 0 || s > seqs[k - 1]), `sequence must increase: ${seqs}`);
    assert.notDeepEqual(
      rows.map((r) => r.occurred_at),
      [...rows.map((r) => r.occurred_at)].sort(),
      'the seed interleaves occurred_at, so log order is not time order (self-check)',
    );

    for (const [k, row] of rows.entries()) {
      const { ingested: ev, stored } = seed.events[k];
      const where = `row ${k + 1} (${stored.id}): ${JSON.stringify(row)}`;
      const plain = Object.fromEntries(Object.entries(row).filter(([c]) => !EXPORT_JSON_COLUMNS.has(c)));
      assert.deepEqual(
        plain,
        {
          id: stored.id,
          organization_id: seed.org.id,
          sequence: String(stored.sequence),
          occurred_at: ev.occurredAt.toISOString(),
          received_at: stored.received_at,
          action: ev.action,
          version: ev.version === undefined ? '' : String(ev.version),
          actor_id: ev.actor.id,
          actor_type: ev.actor.type,
          actor_name: spreadsheetSafe(ev.actor.name),
          location: ev.context.location,
          user_agent: ev.context.userAgent,
        },
        where,
      );
      assert.match(row.received_at, TIMESTAMP_RE, where);
      for (const [col, want] of [
        ['actor_metadata', ev.actor.metadata],
        ['targets', ev.targets],
        ['metadata', ev.metadata],
      ]) {
        let got;
        try {
          got = JSON.parse(row[col]);
        } catch (e) {
          assert.fail(`${col} is not JSON (${e.message}): ${where}`);
        }
        assert.deepEqual(got, want, `${col} of ${where}`);
        assert.equal(JSON.stringify(got), row[col], `${col} is compact JSON: ${where}`);
      }
    }

    // The link is the only credential: a changed signature or no signature is refused.
    const tampered = new URL(ready.url);
    const sig = tampered.searchParams.get('signature');
    tampered.searchParams.set('signature', `${sig.slice(0, -1)}${sig.endsWith('0') ? '1' : '0'}`);
    const bad = await download(tampered.toString());
    assert.ok(bad.status >= 400 && bad.status < 500, `a tampered signature must be refused, got ${bad.status}: ${bad.text.slice(0, 300)}`);
    const unsigned = new URL(ready.url);
    unsigned.search = '';
    const none = await download(unsigned.toString());
    assert.ok(none.status >= 400 && none.status < 500, `an unsigned link must be refused, got ${none.status}: ${none.text.slice(0, 300)}`);
  });

  it('6c. export filters: actions, actorNames, actorIds, targets select exactly their events (§2.2)', async () => {
    const seed = await exportSeed();
    const range = { organizationId: seed.org.id, rangeStart: seed.rangeStart, rangeEnd: seed.rangeEnd };
    const cases = [
      ['actions: [user.signed_out]', { actions: ['user.signed_out'] }, (e) => e.action === 'user.signed_out'],
      ['actorNames: [Smith, Bob]', { actorNames: ['Smith, Bob'] }, (e) => e.actor.name === 'Smith, Bob'],
      ['actorIds: [user_formula]', { actorIds: ['user_formula'] }, (e) => e.actor.id === 'user_formula'],
      ['targets: [document]', { targets: ['document'] }, (e) => e.targets.some((t) => t.type === 'document')],
      [
        'actions + actorNames (both must match)',
        { actions: ['user.signed_out'], actorNames: ['Alice Example'] },
        (e) => e.action === 'user.signed_out' && e.actor.name === 'Alice Example',
      ],
    ];
    for (const [label, filter, pred] of cases) {
      const want = expectedIds(seed, pred);
      assert.ok(want.length > 0 && want.length < 15, `${label}: the seed must make this filter selective (self-check)`);
      const { rows } = await exportCsv({ ...range, ...filter });
      assert.deepEqual(rows.map((r) => r.id), want, `${label}: exactly the matching events, in log order`);
    }
  });

  it('6d. inverted range -> 400 invalid_audit_log_export_range_date; unknown export -> NotFoundException (§2.2, §2.3, §5)', async () => {
    const seed = await exportSeed();
    // The body has `code` but no `errors`, so Node 11 raises GenericServerException, not
    // BadRequestException (§5); what callers can rely on is the status and the code.
    let err;
    try {
      await workos.auditLogs.createExport({
        organizationId: seed.org.id,
        rangeStart: seed.rangeEnd,
        rangeEnd: seed.rangeStart,
      });
    } catch (e) {
      err = e;
    }
    assert.ok(err, 'createExport with range_start after range_end must fail');
    assert.equal(err.status, 400, `status 400 expected: ${err.name} ${err.status} ${err.message} ${JSON.stringify(err.rawData)}`);
    assert.equal(err.code, 'invalid_audit_log_export_range_date', `${err.name}: ${JSON.stringify(err.rawData ?? err)}`);
    assert.ok(err instanceof GenericServerException || err instanceof BadRequestException, `${err.name}: ${err.message}`);

    const path = '/audit_logs/exports';
    const r = await raw('POST', path, {
      body: {
        organization_id: seed.org.id,
        range_start: seed.rangeEnd.toISOString(),
        range_end: seed.rangeStart.toISOString(),
      },
    });
    assert.equal(r.status, 400, show('POST', path, r));
    assert.equal(r.json?.code, 'invalid_audit_log_export_range_date', show('POST', path, r));
    assert.equal(typeof r.json.message, 'string', show('POST', path, r));
    assert.ok(!('error' in r.json), `no "error" key (§9.5): ${r.text}`);

    const nf = await expectReject(workos.auditLogs.getExport(UNKNOWN_EXPORT), NotFoundException, `getExport(${UNKNOWN_EXPORT})`);
    assert.ok(nf.message.includes(UNKNOWN_EXPORT), `the 404 message names the export (§2.3): ${nf.message}`);
  });

  // -------------------------------------------------------------------------------------
  it('7. getOrganizationByExternalId; the tutorial\'s empty context.location; generateLink with successUrl (§3, §4, §2.1)', async () => {
    const externalId = `ext-${randomUUID()}`;
    const org = await workos.organizations.createOrganization({ name: 'External Inc', externalId });
    assert.equal(org.externalId, externalId);
    const found = await workos.organizations.getOrganizationByExternalId(externalId);
    assert.equal(found.id, org.id);
    assert.equal(found.name, 'External Inc');
    assert.equal(found.externalId, externalId);
    await expectReject(
      workos.organizations.getOrganizationByExternalId(`ext-missing-${randomUUID()}`),
      NotFoundException,
      'getOrganizationByExternalId(unknown)',
    );

    // The tutorial's middleware: `location: req.headers['x-forwarded-for'] ?? ''`, empty without
    // a proxy in front. WorkOS accepts it; so does Trailmark, and stores it as sent.
    await workos.auditLogs.createEvent(org.id, validEvent({ context: { location: '', userAgent: 'node' } }));
    const search = await raw('GET', `/audit_logs/events?organization_id=${org.id}`);
    assert.equal(search.status, 200, show('GET', '/audit_logs/events', search));
    assert.equal(search.json.data.length, 1, search.text);
    assert.equal(search.json.data[0].context.location, '', search.text);

    const { link } = await workos.adminPortal.generateLink({
      organization: org.id,
      intent: 'log_streams',
      returnUrl: 'https://app.example.com/settings',
      successUrl: 'https://app.example.com/settings/streams?done=1',
    });
    assert.match(link, /\/portal\?token=[0-9a-f]{64}$/);
  });
});
