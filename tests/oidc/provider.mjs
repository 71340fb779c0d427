// A real OpenID Provider for tests/oidc.rs: npm oidc-provider (OpenID Certified), on loopback,
// with one static confidential client, a few test accounts (with a `groups` claim) and its dev
// interactions (login with any password, then consent, as plain HTML forms over HTTP).
//
// Run (tests/common/oidc.rs does): node provider.mjs --modules DIR --port P --client-id ID
//   --client-secret S --redirect-uri URI [--redirect-uri URI2 ...] [--claims-in-userinfo-only]
// DIR is the node_modules of tests/oidc/npm (installed by tests/peers/install.sh). A fresh RSA
// signing key (random kid) is made at every start, so a restart is a key rollover. Prints
// `oidc-provider listening on <issuer>` once it accepts connections.
//
// Test hooks (never part of a real provider): POST /__test/mode?tamper=X makes the provider
// misbehave from then on, to prove mcp-authd refuses what it must:
//   none         behave (the default)
//   nonce        replace the nonce of the next authorization requests (ID token has another nonce)
//   signature    alter the ID token's payload after signing (the signature no longer matches)
//   foreign-key  re-sign the ID token with another key under the published kid
//   unknown-kid  re-sign the ID token with another key under a kid nobody published
//   audience     re-sign the ID token (with the real key) for another audience
//   iss          name another issuer in the RFC 9207 `iss` of the authorization response
// GET /__test/stats answers {"jwks_fetches": n}.

import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';

const args = process.argv.slice(2);
const arg = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const all = (name) => args.flatMap((a, i) => (a === name ? [args[i + 1]] : []));
const modules = arg('--modules');
const port = Number(arg('--port'));
if (!modules || !port || !arg('--client-id')) {
  console.error('usage: provider.mjs --modules DIR --port P --client-id ID --client-secret S --redirect-uri URI...');
  process.exit(2);
}
const { default: Provider } = await import(pathToFileURL(join(modules, 'oidc-provider/lib/index.js')).href);
const jose = await import(pathToFileURL(join(modules, 'jose/dist/webapi/index.js')).href);

const issuer = arg('--issuer') ?? `http://127.0.0.1:${port}`;

async function rsaKey(kid) {
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  return { ...(await jose.exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
}
const signing = await rsaKey(randomUUID());
// Keys nobody publishes, for the tamper modes.
const foreign = await rsaKey(signing.kid);
const unknown = await rsaKey(randomUUID());

// The test accounts: the dev login form takes any password and uses the login as account id.
const ACCOUNTS = {
  ada: {
    email: 'ada@example.com', email_verified: true, name: 'Ada Lovelace', preferred_username: 'ada',
    groups: ['engineers', 'staff'],
  },
  grace: {
    email: 'grace@example.org', email_verified: true, name: 'Grace Hopper', preferred_username: 'grace',
    groups: ['navy'],
  },
  mallory: {
    email: 'mallory@evil.example', email_verified: true, name: 'Mallory', preferred_username: 'mallory',
    groups: ['outsiders'],
  },
  unverified: {
    email: 'unverified@example.com', email_verified: false, name: 'Una Verified',
    preferred_username: 'unverified', groups: ['engineers'],
  },
};

const provider = new Provider(issuer, {
  clients: [{
    client_id: arg('--client-id'),
    client_secret: arg('--client-secret'),
    redirect_uris: all('--redirect-uri'),
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [signing] },
  scopes: ['openid', 'profile', 'email', 'groups'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  // By default oidc-provider puts profile claims only in userinfo for the code flow (as the
  // spec allows); most providers also put them in the ID token.
  conformIdTokenClaims: args.includes('--claims-in-userinfo-only'),
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const claims = ACCOUNTS[id];
    if (!claims) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...claims }; } };
  },
});

let tamper = 'none';
let jwksFetches = 0;

async function resign(idToken, key, extra = {}) {
  const payload = { ...jose.decodeJwt(idToken), ...extra };
  const header = jose.decodeProtectedHeader(idToken);
  const priv = await jose.importJWK(key, 'RS256');
  return new jose.SignJWT(payload).setProtectedHeader({ ...header, kid: key.kid }).sign(priv);
}

provider.use(async (ctx, next) => {
  if (ctx.path === '/__test/mode' && ctx.method === 'POST') {
    tamper = ctx.query.tamper ?? 'none';
    ctx.body = { tamper };
    return;
  }
  if (ctx.path === '/__test/stats') {
    ctx.body = { jwks_fetches: jwksFetches };
    return;
  }
  if (ctx.path === '/jwks') jwksFetches += 1;
  if (ctx.path === '/auth' && tamper === 'nonce' && ctx.query.nonce) {
    ctx.query = { ...ctx.query, nonce: 'a-nonce-mcp-authd-never-sent' };
  }
  await next();
  const location = ctx.response.get('location');
  if (tamper === 'iss' && location && location.includes('iss=')) {
    const url = new URL(location);
    url.searchParams.set('iss', 'https://idp.attacker.example');
    ctx.response.set('location', url.href);
  }
  if (ctx.path === '/token' && ctx.status === 200 && ctx.body && ctx.body.id_token) {
    const t = ctx.body.id_token;
    if (tamper === 'signature') {
      const [h, p, s] = t.split('.');
      const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
      claims.sub = 'grace';
      ctx.body = { ...ctx.body, id_token: [h, Buffer.from(JSON.stringify(claims)).toString('base64url'), s].join('.') };
    } else if (tamper === 'foreign-key') {
      ctx.body = { ...ctx.body, id_token: await resign(t, foreign) };
    } else if (tamper === 'unknown-kid') {
      ctx.body = { ...ctx.body, id_token: await resign(t, unknown) };
    } else if (tamper === 'audience') {
      ctx.body = { ...ctx.body, id_token: await resign(t, signing, { aud: 'someone-else', azp: 'someone-else' }) };
    }
  }
});

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
