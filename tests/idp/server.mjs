// A real OpenID Connect provider for Gatehouse's integration tests:
// panva's oidc-provider (OpenID certified) with its development
// login/consent pages, configured from the environment.
//
//   IDP_PORT     port on 127.0.0.1 (the issuer is http://127.0.0.1:PORT)
//   IDP_CLIENTS  JSON array of client metadata
//   IDP_USERS    JSON object: login name -> claims (email, groups, ...)
//
// SIGUSR2 rotates the signing key: a new key signs, the old one stays in
// the JWKS. Prints "ready <issuer>" once listening and "rotated kid=<kid>".
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

function fail(message) {
  console.error(`idp: ${message}`);
  process.exit(2);
}

function json(name, fallback) {
  try {
    return JSON.parse(process.env[name] ?? fallback);
  } catch (err) {
    return fail(`${name} is not valid JSON: ${err.message}`);
  }
}

const port = Number(process.env.IDP_PORT);
if (!Number.isInteger(port) || port < 1 || port > 65535) fail('IDP_PORT must be a port number');
const issuer = `http://127.0.0.1:${port}`;
const clients = json('IDP_CLIENTS', '[]');
const users = json('IDP_USERS', '{}');
if (!Array.isArray(clients)) fail('IDP_CLIENTS must be a JSON array');
if (typeof users !== 'object' || users === null || Array.isArray(users)) fail('IDP_USERS must be a JSON object');
const cookieKeys = [randomBytes(32).toString('hex')];

function signingKey() {
  const kid = randomBytes(8).toString('hex');
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
}

let keys = [signingKey()];

// The provider's keys are fixed at construction, so a rotation builds a new
// Provider behind the same HTTP server. Sessions, grants, codes and
// interactions live in oidc-provider's module-level in-memory store and the
// cookie keys are reused, so they all survive a rotation.
function provider() {
  const p = new Provider(issuer, {
    clients,
    clientDefaults: {
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
    },
    jwks: { keys },
    async findAccount(ctx, id) {
      if (!Object.hasOwn(users, id)) return undefined;
      return { accountId: id, async claims() { return { ...users[id], sub: id }; } };
    },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    scopes: ['openid', 'email', 'profile', 'groups'],
    // Claims go into the id_token itself, where the gateway reads them.
    conformIdTokenClaims: false,
    features: {
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      revocation: { enabled: false },
    },
    pkce: { required: () => true, methods: ['S256'] },
    // Plain http: the provider then sets no Secure flag on its cookies.
    cookies: { keys: cookieKeys },
    ttl: { AuthorizationCode: 60, IdToken: 300, AccessToken: 300, Session: 600, Interaction: 600, Grant: 600 },
  });
  return { provider: p, handle: p.callback() };
}

let current = provider();

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

// The development login page accepts any login name and any password. A
// name that is not in IDP_USERS would otherwise end in a 500 page; finish the
// interaction with access_denied instead, so the client gets a proper
// error redirect.
async function handle(req, res) {
  const { provider: p, handle: next } = current;
  if (req.method === 'POST' && /^\/interaction\/[^/]+$/.test(req.url.split('?')[0])) {
    const body = await readBody(req);
    const form = new URLSearchParams(body);
    if (form.get('prompt') === 'login' && !Object.hasOwn(users, form.get('login') ?? '')) {
      try {
        await p.interactionFinished(req, res, {
          error: 'access_denied',
          error_description: 'unknown user',
        }, { mergeWithLastSubmission: false });
      } catch (err) {
        res.statusCode = 400;
        res.end(`interaction failed: ${err.message}`);
      }
      return;
    }
    req.body = body; // already read; oidc-provider falls back to req.body
  }
  next(req, res);
}

const server = createServer((req, res) => {
  handle(req, res).catch((err) => {
    res.statusCode = 500;
    res.end(String(err));
  });
});
server.listen(port, '127.0.0.1', () => console.log(`ready ${issuer}`));

process.on('SIGUSR2', () => {
  keys = [signingKey(), ...keys];
  current = provider();
  console.log(`rotated kid=${keys[0].kid}`);
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
