// Sign-in with the installation's OIDC provider: authorization code with PKCE (RFC 7636), no
// client secret, no library. The access token (a JWT for the API's audience) is the bearer.

export interface OidcConfig {
  issuer: string;
  client_id: string;
  audience: string;
  scope: string;
}

interface Pending {
  verifier: string;
  state: string;
  tokenEndpoint: string;
  clientId: string;
  redirectUri: string;
}

const KEY = "taskpilot.oidc";

const base64url = (bytes: Uint8Array): string =>
  btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

const random = (size: number): string => base64url(crypto.getRandomValues(new Uint8Array(size)));

export async function startSignIn(oidc: OidcConfig): Promise<void> {
  const discovery = await (
    await fetch(`${oidc.issuer.replace(/\/$/, "")}/.well-known/openid-configuration`)
  ).json();
  const verifier = random(32);
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  const redirectUri = location.origin + location.pathname;
  const pending: Pending = {
    verifier,
    state: random(16),
    tokenEndpoint: discovery.token_endpoint,
    clientId: oidc.client_id,
    redirectUri,
  };
  sessionStorage.setItem(KEY, JSON.stringify(pending));
  const params = new URLSearchParams({
    response_type: "code",
    client_id: oidc.client_id,
    redirect_uri: redirectUri,
    scope: oidc.scope,
    state: pending.state,
    code_challenge: base64url(new Uint8Array(digest)),
    code_challenge_method: "S256",
  });
  if (oidc.audience) params.set("audience", oidc.audience); // Auth0 issues a JWT only with one
  location.assign(`${discovery.authorization_endpoint}?${params}`);
}

/** After the provider redirected back with ?code=…: the access token, else null. */
export async function finishSignIn(): Promise<string | null> {
  const query = new URLSearchParams(location.search);
  const code = query.get("code");
  const pending: Pending | null = JSON.parse(sessionStorage.getItem(KEY) ?? "null");
  if (!code || !pending) return null;
  sessionStorage.removeItem(KEY);
  history.replaceState(null, "", location.pathname + "#/");
  if (query.get("state") !== pending.state) throw new Error("sign-in state does not match");
  const response = await fetch(pending.tokenEndpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code,
      redirect_uri: pending.redirectUri,
      client_id: pending.clientId,
      code_verifier: pending.verifier,
    }),
  });
  if (!response.ok) throw new Error(`the provider refused the sign-in (${response.status})`);
  const tokens = await response.json();
  return tokens.access_token ?? null;
}
