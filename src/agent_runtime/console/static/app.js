// The operator console: hash routes (#/inbox, #/tasks, #/tasks/<id>, #/tools), each a view that
// renders into <main> and stops its polling and streams when the operator navigates away.

import { api, clearToken, publicJson, setToken, token } from "./api.js";
import { finishOidc, startOidc } from "./auth.js";
import { ago, badge, brief, estimateText, expiresIn, field, h, statusBadge, tick, usageText, when } from "./dom.js";
import { taskView } from "./task.js";
import { fail, say, sleep } from "./ui.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
let config = { auth_mode: "keys", keys: true, oidc: null };
let view = null;

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  return { parts: path.split("/").filter(Boolean), params: new URLSearchParams(query) };
}

async function route() {
  if (view) view.abort();
  view = new AbortController();
  const signal = view.signal;
  fail(null);
  say("");
  const { parts, params } = parseHash();
  const signedIn = Boolean(token());
  nav.hidden = !signedIn;
  if (!signedIn) { signInView(); return; }
  const section = parts[0] || "inbox";
  for (const link of nav.querySelectorAll("a")) {
    if (link.getAttribute("href") === `#/${section}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  try {
    if (section === "inbox") await inboxView(params, signal);
    else if (section === "tasks" && parts[1]) await taskView(main, parts[1], signal);
    else if (section === "tasks") await tasksView(params, signal);
    else if (section === "tools") await toolsView(signal);
    else main.replaceChildren(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/inbox" }, "Go to the inbox")));
  } catch (err) {
    if (!signal.aborted) fail(err);
  }
}

// --- sign in ---------------------------------------------------------------------------------

function signInView(message) {
  const key = h("input", { id: "api-key", type: "password", autocomplete: "off", required: true, spellcheck: "false" });
  const form = h("form", { class: "panel", id: "sign-in" },
    field("API key", key, "Kept in this tab only (sessionStorage) and sent as an Authorization: Bearer header."),
    h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, "Sign in")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    fail(null);
    setToken(key.value.trim());
    try {
      await api("/v1/tools");
      if (!location.hash || location.hash === "#/sign-in") location.hash = "#/inbox";
      else route();
    } catch (err) {
      clearToken();
      fail(err.status === 401 ? new Error("That key was refused: check it, or ask an admin for one (agent-runtime keys create).") : err);
    }
  });
  const parts = [h("h1", {}, "Sign in")];
  if (message) parts.push(h("p", { class: "muted" }, message));
  if (config.auth_mode === "disabled") {
    parts.push(h("p", {}, "Authentication is disabled on this service: every request acts as an unidentified admin."),
      h("button", { type: "button", class: "primary", onclick: () => { setToken("none"); location.hash = "#/inbox"; route(); } },
        "Continue without a key"));
  } else {
    if (config.keys) parts.push(form);
    if (config.oidc) {
      parts.push(h("div", { class: "panel" },
        h("p", {}, `Or sign in with your organisation's identity provider (${config.oidc.issuer}).`),
        h("button", { type: "button", id: "oidc-sign-in", onclick: () => startOidc(config.oidc).catch(fail) },
          "Sign in with OpenID Connect")));
    }
  }
  main.replaceChildren(...parts);
  (config.keys ? key : main).focus();
}

// --- inbox -----------------------------------------------------------------------------------

const KIND_LABEL = { plan: "plan approval", call: "call gate", in_doubt: "in-doubt call", budget: "budget gate" };

function riskBadges(risk) {
  if (!risk) return [];
  let flags = [];
  if (Array.isArray(risk)) flags = risk.map((r) => (typeof r === "object" ? brief(r) : String(r)));
  else if (typeof risk === "object") {
    flags = Object.entries(risk).filter(([, v]) => v && !(Array.isArray(v) && !v.length))
      .map(([k, v]) => (v === true ? k.replace(/_/g, "-") : `${k.replace(/_/g, "-")}: ${brief(v)}`));
  } else flags = [String(risk)];
  return flags.map((f) => badge(f, "risk"));
}

function expiry(iso) {
  if (!iso) return null;
  const shown = badge(expiresIn(iso), "expiry");
  if (new Date(iso).getTime() <= Date.now()) shown.classList.add("risk");
  return shown;
}

function inboxCard(item) {
  const kind = item.kind || "plan";
  const toolCount = (item.tools || []).length;
  const call = item.call;
  return h("li", { class: "card", dataset: { taskId: item.task_id, kind } },
    h("h2", {}, h("a", { href: `#/tasks/${item.task_id}` }, item.prompt_excerpt || item.task_id)),
    h("div", { class: "row" },
      badge(KIND_LABEL[kind] || kind),
      item.plan_version ? badge(`plan v${item.plan_version}`) : null,
      h("span", {}, `${item.step_count ?? "?"} steps · ${toolCount} tool${toolCount === 1 ? "" : "s"}`),
      ...riskBadges(item.risk),
      item.rule ? badge(`rule: ${item.rule}`) : null,
      expiry(item.expires_at)),
    call ? h("p", { class: "call" }, kind === "call" ? "Call waiting: " : "Call in doubt: ",
      h("span", { class: "mono" }, `${call.tool}(${JSON.stringify(call.arguments).slice(0, 160)})`), ` in step ${call.step_id}`) : null,
    item.plan_summary ? h("p", {}, item.plan_summary) : null,
    item.estimate ? h("p", { class: "estimate" }, "Estimate: ", estimateText(item.estimate)) : null,
    item.usage || item.budget ? h("p", { class: "usage" }, "Spent: ", usageText(item.usage, item.budget)) : null,
    toolCount ? h("p", { class: "muted mono" }, item.tools.join(", ")) : null,
    (item.risky_tools || []).length ? h("p", { class: "muted" }, "Risky tools: ", h("span", { class: "mono" }, item.risky_tools.join(", "))) : null,
    h("p", { class: "muted" },
      `submitted by ${item.submitted_by || "?"} · waiting `, ago(item.waiting_since || item.created_at),
      item.required > 1 ? ` · ${item.approvals}/${item.required} approvals` : ""));
}

// The first `pages` pages of the inbox (`limit` items each, following next_cursor), so what
// "Show more" brought in stays live too.
async function inboxPages(limit, pages, signal) {
  const items = [];
  let cursor = null;
  for (let n = 0; n < pages; n += 1) {
    const query = new URLSearchParams({ limit });
    if (cursor) query.set("cursor", cursor);
    const page = await api(`/v1/approvals?${query}`, { signal });
    items.push(...page.items);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return { items, more: Boolean(cursor) };
}

async function inboxView(params, signal) {
  const asked = Number(params.get("limit"));
  const limit = String(Number.isInteger(asked) && asked >= 1 && asked <= 200 ? asked : 50); // the API's bounds
  const list = h("ul", { class: "cards", id: "inbox", "aria-label": "Waiting for a decision" });
  const updated = h("p", { class: "muted", id: "inbox-updated" });
  let pages = 1;
  let wake = () => {};
  let focusFrom = null; // after "Show more": the first new card takes the focus
  const more = h("button", {
    type: "button", id: "inbox-more", hidden: true,
    onclick: () => { pages += 1; focusFrom = list.children.length; more.disabled = true; wake(); },
  }, "Show more");
  main.replaceChildren(h("h1", {}, "Inbox"),
    h("p", { class: "muted" }, "What waits for your decision in your tenant, newest first. New items appear on their own."),
    list, h("div", { class: "row" }, more), updated);
  let shown = null;
  while (!signal.aborted) {
    try {
      const page = await inboxPages(limit, pages, signal);
      const key = JSON.stringify(page.items);
      if (key !== shown) {
        shown = key;
        list.replaceChildren(...(page.items.length ? page.items.map(inboxCard)
          : [h("li", { class: "muted" }, "Nothing waits for you.")]));
      }
      more.hidden = !page.more;
      more.disabled = false;
      if (focusFrom !== null && list.children[focusFrom]) list.children[focusFrom].querySelector("a").focus();
      focusFrom = null;
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      if (signal.aborted) return;
      if (err.status === 403) {
        list.replaceChildren(h("li", {}, "Your roles do not include approver: the inbox lists what an approver may decide. See the Tasks page."));
        return;
      }
      fail(err);
    }
    await new Promise((resolve) => { wake = resolve; sleep(2000, signal).then(resolve); });
  }
}

// --- tasks list ------------------------------------------------------------------------------

const STATUSES = ["queued", "planning", "awaiting_approval", "approved", "executing", "needs_attention",
  "completed", "failed", "rejected", "cancelled"];

async function tasksView(params, signal) {
  const status = params.get("status") || "";
  const cursor = params.get("cursor") || "";
  const limit = /^[0-9]{1,3}$/.test(params.get("limit") || "") ? params.get("limit") : "20";
  const select = h("select", { id: "status-filter" }, h("option", { value: "" }, "any status"),
    ...STATUSES.map((s) => h("option", { value: s, selected: s === status }, s)));
  select.addEventListener("change", () => {
    const next = new URLSearchParams(select.value ? { status: select.value } : {});
    if (limit !== "20") next.set("limit", limit);
    location.hash = `#/tasks?${next}`;
  });
  const query = new URLSearchParams({ limit });
  if (status) query.set("status", status);
  if (cursor) query.set("cursor", cursor);
  const page = await api(`/v1/tasks?${query}`, { signal });
  const rows = page.items.map((t) => h("tr", {},
    h("td", {}, h("a", { href: `#/tasks/${t.id}`, class: "mono" }, t.id)),
    h("td", {}, statusBadge(t.status)),
    h("td", {}, t.current_plan_version ? `v${t.current_plan_version}` : "—"),
    h("td", { class: "wide" }, t.submitted_by || ""),
    h("td", { class: "wide" }, when(t.created_at))));
  const link = (extra) => {
    const q = new URLSearchParams({ ...(status ? { status } : {}), ...(limit !== "20" ? { limit } : {}), ...extra });
    return `#/tasks?${q}`;
  };
  main.replaceChildren(h("h1", {}, "Tasks"),
    h("div", { class: "row" }, field("Status", select)),
    h("div", { class: "table-wrap" }, h("table", { "aria-label": "Tasks, newest first" },
      h("thead", {}, h("tr", {}, h("th", {}, "Task"), h("th", {}, "Status"), h("th", {}, "Plan"),
        h("th", { class: "wide" }, "Submitted by"), h("th", { class: "wide" }, "Created"))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No tasks."))))),
    h("nav", { class: "row", "aria-label": "Pages" },
      cursor ? h("a", { href: link({}), class: "button", id: "first-page" }, "First page") : null,
      page.next_cursor ? h("a", { href: link({ cursor: page.next_cursor }), class: "button", id: "next-page" }, "Next page") : null));
}

// --- tools -----------------------------------------------------------------------------------

async function toolsView(signal) {
  const data = await api("/v1/tools", { signal });
  const servers = Object.values(data.servers || {});
  const flag = (v) => (v ? "yes" : "no");
  main.replaceChildren(h("h1", {}, "Tools"),
    h("h2", {}, "Servers"),
    h("ul", { class: "cards", "aria-label": "Tool servers" }, servers.map((s) => h("li", { class: "card" },
      h("h3", {}, s.server_id, " ", s.ok ? badge("ok", "status-completed") : badge("unavailable", "status-failed")),
      h("p", { class: "muted" }, `${(s.tools || []).length} tools · discovered ${when(s.discovered_at) || "never"} · last attempt ${when(s.attempted_at) || "never"}`),
      s.error ? h("details", { open: true }, h("summary", {}, "Error and stderr tail"), h("pre", {}, s.error)) : null))),
    h("h2", {}, "Catalogue"),
    h("div", { class: "table-wrap" }, h("table", { "aria-label": "Tool catalogue" },
      h("thead", {}, h("tr", {}, h("th", {}, "Tool"), h("th", {}, "Description"), h("th", {}, "Read-only"),
        h("th", { class: "wide" }, "Idempotent"), h("th", { class: "wide" }, "Safe to repeat"))),
      h("tbody", {}, (data.tools || []).map((t) => h("tr", {},
        h("td", { class: "mono" }, t.name), h("td", {}, t.description || ""), h("td", {}, flag(t.read_only)),
        h("td", { class: "wide" }, flag(t.idempotent)), h("td", { class: "wide" }, flag(t.safe_to_repeat))))))),
    h("h2", {}, "Process pool and warm instances"),
    ...poolTables(data.pool || {}));
}

// The pool's counters in a two-column table, then one row per server with warm instances.
function poolTables(pool) {
  const { warm = {}, ...counters } = pool;
  const { servers = {}, ...warmCounters } = warm;
  const rows = [...Object.entries(counters), ...Object.entries(warmCounters).map(([k, v]) => [`warm ${k}`, v])];
  const text = (v) => (v === null || v === undefined ? "—" : typeof v === "object" ? brief(v) || "none" : String(v));
  const cell = (v) => h("td", {}, text(v));
  return [
    h("div", { class: "table-wrap" }, h("table", { id: "pool", class: "counters", "aria-label": "Process pool" },
      h("tbody", {}, rows.map(([k, v]) => h("tr", { dataset: { key: k } },
        h("th", { scope: "row" }, k.replace(/_/g, " ")), cell(v)))))),
    h("h3", {}, "Warm instances per server"),
    h("div", { class: "table-wrap" }, h("table", { id: "warm", "aria-label": "Warm instances per server" },
      h("thead", {}, h("tr", {}, h("th", {}, "Server"), h("th", {}, "Target"), h("th", {}, "Ready"),
        h("th", {}, "Starting"), h("th", {}, "Last error"))),
      h("tbody", {}, Object.keys(servers).length ? Object.entries(servers).map(([id, s]) => h("tr", { dataset: { server: id } },
        h("td", { class: "mono" }, id), cell(s.target), cell(s.ready), cell(s.starting), cell(s.last_error)))
        : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No server keeps warm instances."))))),
  ];
}

// --- start -----------------------------------------------------------------------------------

window.addEventListener("console:unauthenticated", () => {
  clearToken();
  nav.hidden = true;
  if (view) view.abort();
  signInView("Your key or token was refused or has expired: sign in again.");
});
window.addEventListener("hashchange", route);
document.getElementById("sign-out").addEventListener("click", () => {
  clearToken();
  location.hash = "#/sign-in";
  route();
});

async function start() {
  setInterval(tick, 1000);
  try { config = await publicJson("console/config.json"); } catch (err) { fail(err); }
  if (config.oidc) {
    try { await finishOidc(config.oidc); } catch (err) { fail(err); }
  }
  await route();
}
start();
