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

const port = Number(process.env.IDP_PORT);
const issuer = `http://127.0.0.1:${port}`;
const clients = JSON.parse(process.env.IDP_CLIENTS ?? '[]');
const users = JSON.parse(process.env.IDP_USERS ?? '{}');
const cookieKeys = [randomBytes(32).toString('hex')];

function signingKey() {
  const kid = randomBytes(8).toString('hex');
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
}

let keys = [signingKey()];

function provider() {
  const p = new Provider(issuer, {
    clients,
    jwks: { keys },
    async findAccount(ctx, id) {
      if (!users[id]) return undefined;
      return { accountId: id, async claims() { return { sub: id, ...users[id] }; } };
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
    cookies: { keys: cookieKeys },
    ttl: { AuthorizationCode: 60, IdToken: 300, AccessToken: 300, Session: 600, Interaction: 600, Grant: 600 },
  });
  return p;
}

let current = provider();
const server = createServer((req, res) => current.callback()(req, res));
server.listen(port, '127.0.0.1', () => console.log(`ready ${issuer}`));

process.on('SIGUSR2', () => {
  keys = [signingKey(), ...keys];
  current = provider();
  console.log(`rotated kid=${keys[0].kid}`);
});
process.on('SIGTERM', () => process.exit(0));
