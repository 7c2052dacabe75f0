// Sign-in: an API key, or OpenID Connect's authorization-code flow with PKCE (S256) when the
// service is configured for OIDC. Either way the console ends up with a bearer token in
// sessionStorage (gone when the tab closes) and sends it as `Authorization: Bearer`.

import { setToken } from "./api.js";

const PENDING = "agent-runtime.oidc";

function b64url(bytes) {
  let s = "";
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function random(n) { return b64url(crypto.getRandomValues(new Uint8Array(n))); }

function redirectUri() { return `${location.origin}${location.pathname}`; }

async function discover(issuer) {
  const response = await fetch(`${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`);
  if (!response.ok) throw new Error(`the issuer's discovery document answered HTTP ${response.status}`);
  return response.json();
}

export async function startOidc(oidc) {
  if (!window.isSecureContext || !crypto.subtle) {
    throw new Error("OIDC sign-in needs a secure context (https, or http on localhost)");
  }
  const meta = await discover(oidc.issuer);
  const verifier = random(32);
  const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const state = random(16);
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state, token_endpoint: meta.token_endpoint }));
  const target = new URL(meta.authorization_endpoint);
  target.search = new URLSearchParams({
    response_type: "code", client_id: oidc.client_id, redirect_uri: redirectUri(), scope: oidc.scope || "openid",
    state, code_challenge: challenge, code_challenge_method: "S256",
  }).toString();
  location.assign(target.toString());
}

// On return from the issuer (?code=…&state=…): exchange the code for a token. Returns true when
// a token was stored, false when the page was not an OIDC redirect; throws on a failed exchange.
export async function finishOidc(oidc) {
  const params = new URLSearchParams(location.search);
  if (!params.has("code") && !params.has("error")) return false;
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || "null");
  sessionStorage.removeItem(PENDING);
  history.replaceState(null, "", redirectUri() + location.hash);
  if (params.has("error")) throw new Error(`the issuer refused sign-in: ${params.get("error_description") || params.get("error")}`);
  if (!pending || pending.state !== params.get("state")) throw new Error("sign-in response does not match the request (state)");
  const response = await fetch(pending.token_endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
    body: new URLSearchParams({
      grant_type: "authorization_code", code: params.get("code"), redirect_uri: redirectUri(),
      client_id: oidc.client_id, code_verifier: pending.verifier,
    }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok || !body.access_token) {
    throw new Error(`token exchange failed: ${body.error_description || body.error || `HTTP ${response.status}`}`);
  }
  setToken(body.access_token);
  return true;
}
