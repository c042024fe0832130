// A real OpenID Provider (the certified `oidc-provider` package) for metamcp's single
// sign-on tests. It listens on 127.0.0.1 on an ephemeral port and prints one line of JSON,
// `{"ready":true,"issuer":…,"discovery_url":…}`, once it serves.
//
// Configuration: a JSON object as the first argument (or in OIDC_TEST_PROVIDER_CONFIG):
//   clients:  [{client_id, client_secret, redirect_uris, token_endpoint_auth_method?}]
//   accounts: [{sub, email, email_verified, name, password}]
//   pkce_required:     default true (S256)
//   id_token_claims:   default false; true puts email/name in the ID token itself (otherwise,
//                      as the provider does by default, they come only from userinfo)
//   id_token_audience: test only — a client_id; every ID token the token endpoint returns is
//                      re-signed with the provider's own key with that audience (and azp),
//                      so a relying party's audience check meets a genuinely signed token.
//
// The login and consent steps are plain HTTP, no browser and no HTML: the authorization
// endpoint redirects to /interaction/<uid>; GET there answers JSON {uid, prompt}; then
//   POST /interaction/<uid>/login   {"login": sub, "password": …}
//   POST /interaction/<uid>/confirm (grants what the prompt asks for)
//   POST /interaction/<uid>/abort   (the user declines: error=access_denied)
// each answer a 303 back into the provider, which in the end redirects to the client's
// redirect URI with code and state (or the error).

import http from 'node:http';
import crypto from 'node:crypto';
import { Provider } from 'oidc-provider';
import * as jose from 'jose';

const raw = process.argv[2] ?? process.env.OIDC_TEST_PROVIDER_CONFIG ?? '{}';
const config = JSON.parse(raw);
const accounts = new Map((config.accounts ?? []).map((a) => [a.sub, a]));

const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
const signingJwk = {
  ...(await jose.exportJWK(privateKey)),
  kid: `test-${crypto.randomBytes(6).toString('hex')}`,
  alg: 'RS256',
  use: 'sig',
};

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: (config.clients ?? []).map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: c.redirect_uris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: c.token_endpoint_auth_method ?? 'client_secret_basic',
  })),
  jwks: { keys: [signingJwk] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  conformIdTokenClaims: !config.id_token_claims,
  pkce: { required: () => config.pkce_required !== false },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(_ctx, id) {
    const account = accounts.get(id);
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return {
          sub: account.sub,
          email: account.email,
          email_verified: account.email_verified,
          name: account.name,
        };
      },
    };
  },
});

if (config.id_token_audience) {
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.method === 'POST' && ctx.path === '/token' && ctx.status === 200 && ctx.body?.id_token) {
      const claims = jose.decodeJwt(ctx.body.id_token);
      const token = await new jose.SignJWT({
        ...claims,
        aud: config.id_token_audience,
        azp: config.id_token_audience,
      })
        .setProtectedHeader({ alg: 'RS256', kid: signingJwk.kid, typ: 'JWT' })
        .sign(privateKey);
      ctx.body = { ...ctx.body, id_token: token };
    }
  });
}

const providerHandler = provider.callback();

function json(res, status, body) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify(body));
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : {};
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return json(res, 400, { error: 'interaction uid mismatch' });
  const prompt = details.prompt.name;
  if (req.method === 'GET' && !action) {
    return json(res, 200, { uid, prompt, client_id: details.params.client_id });
  }
  if (req.method !== 'POST') return json(res, 405, { error: 'POST expected' });
  if (action === 'login') {
    const body = await readJson(req);
    const account = accounts.get(body.login);
    if (!account || account.password !== body.password) {
      return json(res, 401, { error: 'wrong login or password' });
    }
    return provider.interactionFinished(
      req,
      res,
      { login: { accountId: account.sub } },
      { mergeWithLastSubmission: false },
    );
  }
  if (action === 'confirm') {
    if (prompt !== 'consent') return json(res, 400, { error: `prompt is ${prompt}` });
    const { accountId } = details.session;
    const clientId = details.params.client_id;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId, clientId });
    const missing = details.prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    return provider.interactionFinished(
      req,
      res,
      { consent: { grantId } },
      { mergeWithLastSubmission: true },
    );
  }
  if (action === 'abort') {
    return provider.interactionFinished(
      req,
      res,
      { error: 'access_denied', error_description: 'End-User aborted interaction' },
      { mergeWithLastSubmission: false },
    );
  }
  return json(res, 404, { error: 'unknown interaction action' });
}

server.on('request', async (req, res) => {
  const match = /^\/interaction\/([^/?]+)(?:\/(login|confirm|abort))?(?:\?.*)?$/.exec(req.url);
  if (!match) return providerHandler(req, res);
  try {
    await interaction(req, res, match[1], match[2]);
  } catch (err) {
    json(res, 400, { error: String(err?.message ?? err) });
  }
});

process.stdout.write(
  `${JSON.stringify({
    ready: true,
    issuer,
    discovery_url: `${issuer}/.well-known/openid-configuration`,
  })}\n`,
);

// Ends with the test harness: stdin closing (the parent died) or a signal.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
