// The WorkOS audit-log tutorial's Express app, written fresh, running on Trailmark.
//
// As in the tutorial: express-session keeps the signed-in user, an audit middleware attaches
// `req.log({ action, targets })` to every request, and each audited route is one line. The
// actor and the user's teams come from the session, the location from the client's IP, the
// user agent from the request, and the time from the clock. Sign-in is a local form over a
// fixed directory instead of SSO, so the example runs with nothing but Trailmark.
//
// What differs from the tutorial (see the README, "Coming from the WorkOS tutorial"):
// - the SDK is pointed at Trailmark: `new WorkOS(key, { apiHostname, port, https: false })`;
// - the location is `req.ip` under Express's `trust proxy` setting, not a raw
//   `X-Forwarded-For` header, which any client can forge.

import { randomUUID } from 'node:crypto';

import express from 'express';
import session from 'express-session';
import { WorkOS } from '@workos-inc/node';

/** The users who can sign in (any password: this demonstrates auditing, not sign-in). */
export const USERS = [
  {
    id: 'user_ada',
    email: 'ada@example.com',
    name: 'Ada Lovelace',
    teams: [{ id: 'team_engineering', name: 'Engineering' }],
  },
  {
    id: 'user_grace',
    email: 'grace@example.com',
    name: 'Grace Hopper',
    teams: [
      { id: 'team_engineering', name: 'Engineering' },
      { id: 'team_platform', name: 'Platform' },
    ],
  },
];

/**
 * The Express app.
 *
 * @param {object} options
 * @param {string} options.apiKey         Trailmark API key (`sk_…`)
 * @param {string} options.apiHostname    Trailmark's host, e.g. `127.0.0.1`
 * @param {number} options.port           Trailmark's port
 * @param {boolean} [options.https]       false for a plain-HTTP Trailmark
 * @param {string} options.organizationId the organization whose log the events go to
 * @param {string} options.sessionSecret  signs the session cookie
 * @param {string|boolean|number} [options.trustProxy] Express's `trust proxy` (default: none)
 */
export function createApp({
  apiKey,
  apiHostname,
  port,
  https = false,
  organizationId,
  sessionSecret,
  trustProxy = false,
}) {
  const workos = new WorkOS(apiKey, { apiHostname, port, https });
  const posts = new Map();
  const app = express();
  // Only proxies named here may set the client IP through X-Forwarded-For.
  app.set('trust proxy', trustProxy);
  app.use(express.urlencoded({ extended: false }));
  app.use(
    session({
      secret: sessionSecret,
      resave: false,
      saveUninitialized: false,
      cookie: { httpOnly: true, sameSite: 'lax' },
    }),
  );

  // The tutorial's audit middleware: every route can call `await req.log({ action, targets })`.
  app.use((req, res, next) => {
    req.log = async ({ action, targets = [] }) => {
      const user = req.session.user;
      if (!user) throw new NoUserError();
      await workos.auditLogs.createEvent(organizationId, {
        action,
        occurredAt: new Date(),
        actor: { type: 'user', id: user.id, name: user.name },
        // The user's teams are default targets, after the route's own.
        targets: [...targets, ...user.teams.map((t) => ({ type: 'team', id: t.id, name: t.name }))],
        context: { location: req.ip, userAgent: req.get('user-agent') ?? '' },
      });
    };
    next();
  });

  app.get('/', (req, res) => {
    const user = req.session.user;
    res.type('html').send(
      user
        ? `<p>Signed in as ${user.name}.</p>
           <form method=post action=/posts><input name=title><button>Post</button></form>
           <form method=post action=/invite><input name=email><button>Invite</button></form>
           <form method=post action=/logout><button>Sign out</button></form>`
        : `<form method=post action=/login><input name=email placeholder=ada@example.com>
           <input name=password type=password><button>Sign in</button></form>`,
    );
  });

  app.post('/login', async (req, res) => {
    const user = USERS.find((u) => u.email === String(req.body.email ?? '').trim());
    if (!user) return res.status(401).send('unknown user');
    req.session.user = user;
    await req.log({ action: 'user.login', targets: [{ type: 'user', id: user.id }] });
    res.redirect(303, '/');
  });

  app.post('/logout', async (req, res) => {
    await req.log({ action: 'user.logout', targets: [{ type: 'user', id: req.session.user?.id }] });
    req.session.destroy(() => res.redirect(303, '/'));
  });

  app.post('/invite', async (req, res) => {
    const email = String(req.body.email ?? '').trim();
    if (!email.includes('@')) return res.status(422).send('email is not an address');
    await req.log({ action: 'user.invite', targets: [{ type: 'user', id: email }] });
    res.status(201).json({ invited: email });
  });

  app.post('/posts', async (req, res) => {
    if (!req.session.user) throw new NoUserError();
    const id = `post_${randomUUID()}`;
    posts.set(id, String(req.body.title ?? ''));
    await req.log({ action: 'post.create', targets: [{ type: 'post', id }] });
    res.status(201).json({ id });
  });

  app.post('/posts/:id/delete', async (req, res) => {
    if (!req.session.user) throw new NoUserError();
    if (!posts.delete(req.params.id)) return res.status(404).send('no such post');
    await req.log({ action: 'post.delete', targets: [{ type: 'post', id: req.params.id }] });
    res.status(204).end();
  });

  // No user, no event: an audited action without a session is refused.
  app.use((err, req, res, next) => {
    if (err instanceof NoUserError) {
      return res.status(401).json({ message: err.message, code: 'audit_no_user' });
    }
    console.error('audit event not recorded:', err);
    res.status(500).json({ message: 'Internal error.' });
  });

  return app;
}

export class NoUserError extends Error {
  constructor() {
    super('this action is audited and needs a signed-in user');
  }
}
