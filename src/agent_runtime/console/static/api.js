// The JSON API, called with the operator's bearer token. Every URL is relative to the service's
// root, found from this module's own URL (…/console/assets/api.js), so a path prefix is kept.

export const ROOT = new URL("../../", import.meta.url);
const TOKEN_KEY = "agent-runtime.token";

export function token() { return sessionStorage.getItem(TOKEN_KEY); }
export function setToken(value) { sessionStorage.setItem(TOKEN_KEY, value); }
export function clearToken() { sessionStorage.removeItem(TOKEN_KEY); }

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "http_error";
    this.details = error.details || {};
  }
}

function headers(extra) {
  const h = { Accept: "application/json", ...extra };
  const t = token();
  if (t && t !== "none") h.Authorization = `Bearer ${t}`;
  return h;
}

export function url(path) { return new URL(path.replace(/^\//, ""), ROOT).toString(); }

export async function api(path, { method = "GET", body, signal } = {}) {
  const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }), signal };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(url(path), init);
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!response.ok) throw refused(new ApiError(response.status, data));
  return data;
}

// A 401 sends the operator back to the sign-in form (app.js listens), wherever it came from.
function refused(err) {
  if (err.status === 401) window.dispatchEvent(new CustomEvent("console:unauthenticated", { detail: err }));
  return err;
}

export async function publicJson(path) {
  const response = await fetch(url(path), { headers: { Accept: "application/json" } });
  if (!response.ok) throw new ApiError(response.status, null);
  return response.json();
}

// Server-sent events over fetch(): EventSource cannot send an Authorization header. Parses the
// stream itself and reconnects with Last-Event-ID (growing back-off) until the stream ends with
// the task's terminal event or `signal` aborts. `onEvent({id, event, data})`; `onState(text)`.
export async function followEvents(path, { after = 0, signal, onEvent, onState }) {
  let last = after;
  let delay = 500;
  while (!signal.aborted) {
    let finished = false;
    try {
      onState && onState("connecting");
      const h = headers({ Accept: "text/event-stream" });
      if (last > 0) h["Last-Event-ID"] = String(last);
      const response = await fetch(url(path), { headers: h, signal, cache: "no-store" });
      if (!response.ok) {
        const body = await response.json().catch(() => null);
        throw refused(new ApiError(response.status, body));
      }
      onState && onState("live");
      delay = 500;
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        // A CR at the end may be half of a CRLF split across reads: keep it for the next one.
        const held = buffer.endsWith("\r") ? "\r" : "";
        buffer = buffer.slice(0, buffer.length - held.length).replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const parsed = parseFrame(frame);
          if (!parsed) continue;
          if (parsed.id !== null) {
            if (parsed.id <= last) continue; // a server that replays too much cannot duplicate events
            last = parsed.id;
          }
          if (isTerminal(parsed.event)) finished = true;
          onEvent(parsed);
        }
        buffer += held;
      }
      if (finished) { onState && onState("ended"); return; }
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError && err.status < 500) { onState && onState(`error: ${err.message}`); return; }
    }
    if (signal.aborted) return;
    onState && onState(`reconnecting in ${Math.round(delay / 100) / 10} s`);
    await sleep(delay, signal);
    delay = Math.min(delay * 2, 10000);
  }
}

const TERMINAL = new Set(["task_completed", "task_failed", "task_rejected", "task_cancelled"]);
export function isTerminal(type) { return TERMINAL.has(type); }

function parseFrame(frame) {
  let id = null; let event = "message"; const data = [];
  for (const line of frame.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "id") id = Number(value);
    else if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  let payload;
  try { payload = JSON.parse(data.join("\n")); } catch { return null; }
  return { id, event, data: payload };
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}
