// Runs the example against a Trailmark server:
//   TRAILMARK_API_KEY=sk_… npm start
// Trailmark at TRAILMARK_URL (default http://127.0.0.1:8080); events go to TRAILMARK_ORG, or to
// a new organization "Express example" when it is unset. PORT (default 3000) is the app's.

import { randomBytes } from 'node:crypto';

import { USERS, createApp } from './app.mjs';

const apiKey = process.env.TRAILMARK_API_KEY;
if (!apiKey) {
  console.error('set TRAILMARK_API_KEY to a Trailmark admin or ingest key');
  process.exit(1);
}
const trailmark = new URL(process.env.TRAILMARK_URL ?? 'http://127.0.0.1:8080');

let organizationId = process.env.TRAILMARK_ORG;
if (!organizationId) {
  const res = await fetch(new URL('/organizations', trailmark), {
    method: 'POST',
    headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: 'Express example' }),
  });
  if (!res.ok) throw new Error(`creating an organization: ${res.status} ${await res.text()}`);
  organizationId = (await res.json()).id;
}

const app = createApp({
  apiKey,
  apiHostname: trailmark.hostname,
  port: Number(trailmark.port || (trailmark.protocol === 'https:' ? 443 : 80)),
  https: trailmark.protocol === 'https:',
  organizationId,
  sessionSecret: process.env.SESSION_SECRET ?? randomBytes(32).toString('hex'),
  trustProxy: process.env.TRUST_PROXY ?? false,
});
const listener = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  const { port } = listener.address();
  console.log(
    `example app on http://127.0.0.1:${port} (sign in as ${USERS.map((u) => u.email).join(' or ')}), events to ${organizationId}`,
  );
});
