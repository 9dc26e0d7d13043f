// The real `trailmark serve` binary as a child process, for the JavaScript test suites
// (conformance/node, examples/express-app, tests/browser). No dependencies: each suite imports
// it by relative path.
//
// Binary: $TRAILMARK_BIN, default <repo>/target/debug/trailmark.

import { spawn } from 'node:child_process';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const TRAILMARK_BIN = process.env.TRAILMARK_BIN || join(REPO_ROOT, 'target', 'debug', 'trailmark');
const STARTUP_TIMEOUT_MS = 30_000;

const running = new Set();
// Never leave a server behind if the runner dies early.
process.on('exit', () => {
  for (const child of running) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

/**
 * Starts `trailmark serve --listen 127.0.0.1:0 --data-dir <dataDir> <args…>` with `apiKey` as
 * its bootstrap key and resolves with `{ child, port }` once it prints where it listens.
 * Inherited TRAILMARK_* variables (a developer's database URL, say) must not leak in.
 */
export function startTrailmark({ apiKey, dataDir, args = [] }) {
  return new Promise((resolveServer, reject) => {
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith('TRAILMARK_')),
    );
    env.TRAILMARK_API_KEY = apiKey;
    const child = spawn(
      TRAILMARK_BIN,
      ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, ...args],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    running.add(child);
    child.once('exit', () => running.delete(child));
    let stdout = '';
    let stderr = '';
    let settled = false;
    const fail = (why) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`${why}\n  binary: ${TRAILMARK_BIN}\n  --- stdout ---\n${stdout}\n  --- stderr ---\n${stderr}`));
    };
    const timer = setTimeout(
      () => fail(`trailmark did not print "listening on http://127.0.0.1:PORT" within ${STARTUP_TIMEOUT_MS / 1000} s`),
      STARTUP_TIMEOUT_MS,
    );
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stdout);
      if (m && !settled) {
        settled = true;
        clearTimeout(timer);
        resolveServer({ child, port: Number(m[1]) });
      }
    });
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    child.on('error', (err) => fail(`could not start trailmark: ${err.message}`));
    child.on('exit', (code, signal) => fail(`trailmark exited before listening (code ${code}, signal ${signal})`));
  });
}

/** SIGTERM, then SIGKILL after 10 s; resolves once the child has exited. */
export function stopTrailmark(child) {
  return new Promise((done) => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return done();
    const killTimer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(killTimer);
      done();
    });
    child.kill('SIGTERM');
  });
}
