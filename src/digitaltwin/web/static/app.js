// The dashboard's core: the API client (tokens in memory, one refresh on 401), the login with
// MFA, the role of the signed-in user, and the router over the URL fragment.
import { renderOverview } from "./overview.js";
import { renderAsset } from "./asset.js";
import { renderModels } from "./models.js";
import { renderData } from "./data.js";
import { renderSchedules } from "./schedules.js";
import { renderAlarms } from "./alarms.js";
import { el, clear, toast } from "./dom.js";

const ROLE_RANK = { viewer: 1, operator: 2, admin: 3 };

// Tokens live in this closure only (never in storage a script could read later).
const session = { access: null, refresh: null, me: null };

export class ApiError extends Error {
  constructor(status, detail, field) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.field = field;
  }
}

async function send(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (session.access) headers.set("Authorization", `Bearer ${session.access}`);
  if (options.json !== undefined) {
    headers.set("Content-Type", "application/json");
    options.body = JSON.stringify(options.json);
  }
  return fetch(path, { ...options, headers });
}

async function refreshTokens() {
  if (!session.refresh) return false;
  const response = await fetch("/api/v1/auth/refresh", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: session.refresh }),
  });
  if (!response.ok) return false;
  const body = await response.json();
  session.access = body.access_token;
  session.refresh = body.refresh_token;
  return true;
}

/** Call the API; JSON in and out. A 401 refreshes the tokens once, then sends to the login. */
//: Longest wait honoured from a 429's Retry-After before the one retry (seconds).
const MAX_RETRY_WAIT_S = 20;

export async function api(path, options = {}) {
  let response = await send(path, { ...options });
  if (response.status === 401 && await refreshTokens()) response = await send(path, { ...options });
  if (response.status === 429) {
    // Over the API's per-client rate limit: wait as the server asks (bounded), then try once more,
    // so a busy page loads late rather than failing.
    const wait = Math.min(Number(response.headers.get("retry-after")) || 1, MAX_RETRY_WAIT_S);
    await new Promise((resolve) => { setTimeout(resolve, wait * 1000); });
    response = await send(path, { ...options });
  }
  if (response.status === 401) {
    signOut();
    throw new ApiError(401, "Please log in again.");
  }
  if (!response.ok) {
    let body = {};
    try { body = await response.json(); } catch { /* not JSON */ }
    throw new ApiError(response.status, body.detail, body.field);
  }
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.blob();
}

/** An authenticated fetch for streams and downloads (the caller reads the body). */
export function authorizedFetch(path, options = {}) {
  return send(path, options);
}

export function role() {
  return session.me ? session.me.role : null;
}

/** Whether the signed-in user's role reaches ``minimum`` (viewer < operator < admin). */
export function allows(minimum) {
  return (ROLE_RANK[role()] || 0) >= (ROLE_RANK[minimum] || 99);
}

/** Remove what the role may not do: elements with ``data-min-role`` above it. */
export function applyRole(root) {
  root.querySelectorAll("[data-min-role]").forEach((node) => {
    if (!allows(node.dataset.minRole)) node.remove();
  });
}

function signOut() {
  session.access = session.refresh = session.me = null;
  document.getElementById("nav").hidden = true;
  document.getElementById("logout").hidden = true;
  document.getElementById("who").textContent = "";
  if (location.hash !== "#/login") location.hash = "#/login";
  else route();
}

async function signedIn(tokens) {
  session.access = tokens.access_token;
  session.refresh = tokens.refresh_token;
  session.me = await api("/api/v1/auth/me");
  const nav = document.getElementById("nav");
  nav.hidden = false;
  applyRole(nav);
  document.getElementById("logout").hidden = false;
  document.getElementById("who").textContent = `${session.me.username} (${session.me.role})`;
  const target = sessionStorage.getItem("dt-after-login") || "#/";
  sessionStorage.removeItem("dt-after-login");
  if (location.hash !== target) location.hash = target; // the hashchange renders it
  else route();
}

function renderLogin(main) {
  const error = el("p", { class: "error", role: "alert" });
  const user = el("input", { id: "username", name: "username", autocomplete: "username", required: "" });
  const pass = el("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: "" });
  const form = el("form", { class: "card narrow", "aria-labelledby": "login-title" },
    el("h1", { id: "login-title" }, "Log in"),
    el("label", { for: "username" }, "Username"), user,
    el("label", { for: "password" }, "Password"), pass,
    el("button", { type: "submit" }, "Log in"), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const response = await fetch("/api/v1/auth/token", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: user.value, password: pass.value }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) { error.textContent = body.detail || `Login failed (${response.status})`; return; }
    if (body.mfa_required) { renderMfa(main, body.mfa_token); return; }
    await signedIn(body);
  });
  clear(main).append(form);
  user.focus();
}

function renderMfa(main, mfaToken) {
  const error = el("p", { class: "error", role: "alert" });
  const code = el("input", { id: "otp", name: "otp", inputmode: "numeric", autocomplete: "one-time-code", required: "" });
  const form = el("form", { class: "card narrow", "aria-labelledby": "mfa-title" },
    el("h1", { id: "mfa-title" }, "Second factor"),
    el("label", { for: "otp" }, "Code from your authenticator app (or a recovery code)"), code,
    el("button", { type: "submit" }, "Verify"), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const response = await fetch("/api/v1/auth/mfa/verify", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ mfa_token: mfaToken, code: code.value.trim() }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) { error.textContent = body.detail || `Verification failed (${response.status})`; return; }
    await signedIn(body);
  });
  clear(main).append(form);
  code.focus();
}

let current = null; // the page's cleanup (closes live streams)
let rendering = 0; // the newest route() call; an older one still loading throws its page away

async function route() {
  const main = document.getElementById("main");
  const mine = ++rendering;
  if (current) { current(); current = null; }
  const hash = location.hash || "#/";
  if (!session.access) {
    if (hash !== "#/login") sessionStorage.setItem("dt-after-login", hash);
    renderLogin(main);
    return;
  }
  const parts = hash.slice(2).split("/").map(decodeURIComponent);
  try {
    if (parts[0] === "assets" && parts[1]) current = await renderAsset(main, parts[1]);
    else if (parts[0] === "models") current = await renderModels(main, parts[1]);
    else if (parts[0] === "data") current = await renderData(main);
    else if (parts[0] === "schedules") current = await renderSchedules(main, parts[1]);
    else if (parts[0] === "alarms") current = await renderAlarms(main);
    else current = await renderOverview(main);
    if (mine !== rendering) { if (current) current(); current = null; return; }
    applyRole(main);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return;
    clear(main).append(el("p", { class: "error", role: "alert" }, `Could not load this page: ${error.message}`));
  }
  main.focus({ preventScroll: true });
}

document.getElementById("logout").addEventListener("click", async () => {
  try { await api("/api/v1/auth/logout", { method: "POST" }); } catch { /* ended anyway */ }
  signOut();
  toast("Logged out.");
});
window.addEventListener("hashchange", route);
route();
