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
//   mcp:               {access_token_ttl} — also an OAuth-protected MCP server (for the
//                      gateway's upstream OAuth tests): the provider then allows dynamic
//                      registration, issues JWT access tokens for that server's URL (RFC 8707
//                      resource indicators) living access_token_ttl seconds, and rotating
//                      refresh tokens. The server (its own port) answers 401 with an RFC 9728
//                      resource_metadata challenge without a valid token, serves that
//                      metadata, and has one tool, `whoami`, answering `sub=<account>`. The
//                      ready line then also carries `mcp_url`.
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

const { privateKey, publicKey } = await jose.generateKeyPair('RS256', { extractable: true });
const signingJwk = {
  ...(await jose.exportJWK(privateKey)),
  kid: `test-${crypto.randomBytes(6).toString('hex')}`,
  alg: 'RS256',
  use: 'sig',
};

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const mcp = config.mcp ?? null;
const mcpServer = mcp ? http.createServer() : null;
if (mcpServer) await new Promise((resolve) => mcpServer.listen(0, '127.0.0.1', resolve));
const mcpOrigin = mcpServer ? `http://127.0.0.1:${mcpServer.address().port}` : null;
const resource = mcpServer ? `${mcpOrigin}/mcp` : null;
const accessTtl = mcp?.access_token_ttl ?? 60;

// The protected resource's part of the provider's configuration (see `mcp` above).
const resourceConfig = mcp
  ? {
      scopes: ['openid', 'offline_access', 'mcp'],
      issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
      rotateRefreshToken: () => true,
      ttl: {
        AccessToken: accessTtl,
        AuthorizationCode: 60,
        Grant: 86400,
        Interaction: 600,
        RefreshToken: 86400,
        Session: 86400,
      },
    }
  : {};
const resourceFeatures = mcp
  ? {
      registration: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resource,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, indicator) => {
          if (indicator !== resource) throw new Error(`unknown resource ${indicator}`);
          return {
            scope: 'mcp',
            audience: resource,
            accessTokenTTL: accessTtl,
            accessTokenFormat: 'jwt',
          };
        },
      },
    }
  : {};

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
  features: { devInteractions: { enabled: false }, ...resourceFeatures },
  ...resourceConfig,
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

if (mcpServer) {
  const keys = jose.createLocalJWKSet({
    keys: [{ ...(await jose.exportJWK(publicKey)), kid: signingJwk.kid, alg: 'RS256' }],
  });
  const metadataUrl = `${mcpOrigin}/.well-known/oauth-protected-resource/mcp`;
  mcpServer.on('request', async (req, res) => {
    try {
      const path = new URL(req.url, mcpOrigin).pathname;
      if (path === '/.well-known/oauth-protected-resource/mcp') {
        return json(res, 200, {
          resource,
          authorization_servers: [issuer],
          scopes_supported: ['mcp'],
          bearer_methods_supported: ['header'],
        });
      }
      if (path !== '/mcp') return json(res, 404, { error: 'not found' });
      const auth = req.headers.authorization ?? '';
      let claims;
      try {
        if (!auth.startsWith('Bearer ')) throw new Error('no token');
        ({ payload: claims } = await jose.jwtVerify(auth.slice(7), keys, {
          issuer,
          audience: resource,
        }));
      } catch (err) {
        res.statusCode = 401;
        res.setHeader(
          'WWW-Authenticate',
          `Bearer resource_metadata="${metadataUrl}", scope="mcp"${auth ? ', error="invalid_token"' : ''}`,
        );
        return res.end();
      }
      if (req.method !== 'POST') {
        res.statusCode = 405;
        return res.end();
      }
      const msg = await readJson(req);
      if (msg.id === undefined) {
        res.statusCode = 202;
        return res.end();
      }
      const answer = (body) => json(res, 200, { jsonrpc: '2.0', id: msg.id, ...body });
      switch (msg.method) {
        case 'initialize':
          return answer({
            result: {
              protocolVersion: msg.params?.protocolVersion ?? '2025-06-18',
              capabilities: { tools: {} },
              serverInfo: { name: 'protected-mcp', version: '1.0.0' },
            },
          });
        case 'ping':
          return answer({ result: {} });
        case 'tools/list':
          return answer({
            result: {
              tools: [
                {
                  name: 'whoami',
                  description: 'The account the access token was issued for',
                  inputSchema: { type: 'object', properties: {} },
                },
              ],
            },
          });
        case 'tools/call':
          if (msg.params?.name === 'whoami') {
            return answer({ result: { content: [{ type: 'text', text: `sub=${claims.sub}` }] } });
          }
          return answer({ error: { code: -32602, message: 'unknown tool' } });
        default:
          return answer({ error: { code: -32601, message: 'method not found' } });
      }
    } catch (err) {
      return json(res, 400, { error: String(err?.message ?? err) });
    }
  });
}

process.stdout.write(
  `${JSON.stringify({
    ready: true,
    issuer,
    discovery_url: `${issuer}/.well-known/openid-configuration`,
    ...(resource ? { mcp_url: resource } : {}),
  })}\n`,
);

// Ends with the test harness: stdin closing (the parent died) or a signal.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
