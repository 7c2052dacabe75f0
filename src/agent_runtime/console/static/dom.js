// A tiny element builder: text always goes in as text nodes (no innerHTML, so nothing a task or a
// model wrote can run as markup).

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

let counter = 0;
export function uid(prefix) { counter += 1; return `${prefix}-${counter}`; }

// A labelled control: <label for=id>text</label><control id=id>.
export function field(text, control, hint) {
  if (!control.id) control.id = uid("f");
  const parts = [h("label", { for: control.id }, text), control];
  if (hint) parts.push(h("div", { class: "muted" }, hint));
  return h("div", { class: "field" }, parts);
}

export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

// Texts that age: "expires in 5 min", "3 min ago". Each is a <span> carrying its instant, which
// tick() (every second, from app.js) rewrites, so a view that keeps its DOM between polls still
// shows the time left now, not when it was drawn.
function leftText(iso, then) {
  const left = (new Date(iso).getTime() - Date.now()) / 1000;
  return left > 0 ? `expires in ${duration(left)}${then}` : "expired";
}

function agoText(iso) { return `${duration((Date.now() - new Date(iso).getTime()) / 1000)} ago`; }

export function expiresIn(iso, then = "") {
  return h("span", { class: "deadline", dataset: { deadline: iso, then } }, leftText(iso, then));
}

export function ago(iso) { return h("span", { dataset: { since: iso } }, agoText(iso)); }

export function tick() {
  for (const el of document.querySelectorAll("[data-deadline]")) {
    const text = leftText(el.dataset.deadline, el.dataset.then || "");
    if (el.textContent !== text) el.textContent = text;
    const holder = el.closest(".badge");
    if (holder) holder.classList.toggle("risk", text === "expired");
  }
  for (const el of document.querySelectorAll("[data-since]")) {
    const text = agoText(el.dataset.since);
    if (el.textContent !== text) el.textContent = text;
  }
}

export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

export function badge(text, cls = "") { return h("span", { class: `badge ${cls}`.trim() }, text); }

export function statusBadge(status) { return badge(status, `status-${status}`); }

// Any JSON value as short readable text (for fields whose shape the API may still change).
export function brief(value) {
  if (value === null || value === undefined) return "";
  if (Array.isArray(value)) return value.map(brief).join(", ");
  if (typeof value === "object") {
    return Object.entries(value).filter(([, v]) => v !== null && v !== undefined)
      .map(([k, v]) => `${k.replace(/_/g, " ")}: ${brief(v)}`).join(" · ");
  }
  return String(value);
}

// A plan's cost estimate (policy/estimate.py's summary) in a line.
export function estimateText(est) {
  if (!est) return "";
  const parts = [est.cost_usd === null || est.cost_usd === undefined ? "cost unknown" : `≈ $${Number(est.cost_usd).toFixed(4)}`];
  if (est.tool_calls !== undefined) parts.push(`${est.tool_calls} tool call${est.tool_calls === 1 ? "" : "s"}`);
  if (est.wall_seconds !== undefined) parts.push(`~${duration(est.wall_seconds)}`);
  if (est.input_tokens !== undefined) parts.push(`${Number(est.input_tokens) + Number(est.output_tokens || 0)} tokens`);
  if (est.basis) parts.push(`(${est.basis})`);
  return parts.join(" · ");
}

// Usage against the budget: "cost_usd 0.01 of 2 · tool_calls 3 of 10".
export function usageText(usage, budget) {
  const names = new Set([...Object.keys(usage || {}), ...Object.keys(budget || {})]);
  return [...names].map((k) => {
    const used = usage && usage[k] !== undefined ? +Number(usage[k]).toFixed(4) : 0;
    return budget && budget[k] !== undefined ? `${k.replace(/_/g, " ")} ${used} of ${budget[k]}` : `${k.replace(/_/g, " ")} ${used}`;
  }).join(" · ");
}
