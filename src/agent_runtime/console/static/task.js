// The task page: prompt and metadata, the plan and its versions, a diff between any two versions,
// the decisions (approve / reject / revise / edit / cancel), in-doubt calls, call gates, and live
// progress over SSE with reconnect from the last event id.

import { api, followEvents, isTerminal } from "./api.js";
import { diffLines, planLines } from "./diff.js";
import { brief, estimateText, expiresIn, field, h, statusBadge, uid, usageText, when } from "./dom.js";
import { editorSection } from "./editor.js";
import { fail, say } from "./ui.js";

const RELOAD_ON = new Set(["plan_proposed", "approval_required", "plan_edited", "revision_requested", "task_approved",
  "approval_recorded", "approvals_discarded", "task_rejected", "execution_started", "step_started", "step_completed",
  "step_failed", "needs_attention", "attention_resolved", "planning_started", "task_completed", "task_failed",
  "task_cancelled", "plan_invalid", "call_approval_required", "call_decided", "approval_expired", "budget_exceeded",
  "budget_raised", "step_retrying", "step_skipped", "replan_requested", "verification_completed"]);
const FINAL = new Set(["completed", "failed", "rejected", "cancelled"]);

export async function taskView(main, taskId, signal) {
  const state = {
    id: taskId, task: null, versions: [], tools: null, shown: null, diffFrom: null, diffTo: null,
    editing: false, decideKey: null, attentionKey: null, lastSeq: 0,
  };
  const sections = {
    head: h("section", { "aria-labelledby": "task-title" }),
    attention: h("section", { id: "attention", "aria-label": "Decisions during execution" }),
    decide: h("section", { id: "decide", "aria-label": "Decision" }),
    editor: h("section", { id: "editor", "aria-label": "Plan editor" }),
    plan: h("section", { id: "plan", "aria-labelledby": "plan-title" }),
    diff: h("section", { id: "diff", "aria-labelledby": "diff-title" }),
    progress: h("section", { id: "progress", "aria-labelledby": "progress-title" }),
  };
  const log = h("ol", { class: "events", id: "events", "aria-label": "Events" });
  const streamState = h("span", { class: "muted", id: "stream-state" }, "connecting");
  sections.progress.append(h("h2", { id: "progress-title" }, "Progress ", streamState), log);
  main.replaceChildren(...Object.values(sections));

  let reloadTimer = null;
  const reload = async () => {
    const [task, versions] = await Promise.all([
      api(`/v1/tasks/${taskId}`, { signal }), api(`/v1/tasks/${taskId}/plan/versions`, { signal })]);
    const grew = versions.length !== state.versions.length;
    state.task = task;
    state.versions = versions;
    if (grew || state.shown === null) state.shown = task.current_plan_version;
    if (grew || state.diffTo === null) {
      state.diffTo = versions.length ? versions[versions.length - 1].version : null;
      state.diffFrom = versions.length > 1 ? versions[versions.length - 2].version : state.diffTo;
    }
    render();
  };
  const scheduleReload = () => {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(() => reload().catch((err) => { if (!signal.aborted) fail(err); }), 150);
  };
  signal.addEventListener("abort", () => clearTimeout(reloadTimer));

  const act = async (label, path, body, method = "POST", rethrow = false) => {
    fail(null);
    try {
      await api(path, { method, body, signal });
    } catch (err) {
      if (signal.aborted) return false;
      if (rethrow) throw err;
      fail(err);
      return false;
    }
    say(label);
    await reload().catch((err) => { if (!signal.aborted) fail(err); });
    return true;
  };

  function render() {
    // A reload redraws sections: the control the operator was on gets the focus back.
    const focused = document.activeElement && main.contains(document.activeElement) ? document.activeElement.id : "";
    draw();
    const again = focused && document.getElementById(focused);
    if (again && again !== document.activeElement) again.focus();
  }

  function draw() {
    renderHead(sections.head, state.task);
    renderDecide(sections.decide, state, act, () => { state.editing = true; render(); });
    renderAttention(sections.attention, state, act);
    renderPlan(sections.plan, state, () => renderPlan(sections.plan, state));
    renderDiff(sections.diff, state);
    if (state.editing && !sections.editor.firstChild) { // opened once; a reload keeps what is being typed
      editorSection(sections.editor, state, {
        signal,
        close: () => { state.editing = false; sections.editor.replaceChildren(); },
        saved: async () => { state.editing = false; sections.editor.replaceChildren(); say("Plan edited: a new version was stored."); await reload(); },
      });
    }
  }

  await reload();
  followEvents(`/v1/tasks/${taskId}/stream`, {
    after: 0,
    signal,
    onState: (text) => { streamState.textContent = `(${text}${state.lastSeq ? `, last event #${state.lastSeq}` : ""})`; },
    onEvent: ({ id, event, data }) => {
      state.lastSeq = id ?? state.lastSeq;
      appendEvent(log, event, data);
      if (RELOAD_ON.has(event) || isTerminal(event)) scheduleReload();
    },
  });
}

// --- head ------------------------------------------------------------------------------------

function renderHead(section, task) {
  const meta = Object.entries(task.metadata || {});
  section.replaceChildren(h("div", {},
    h("h1", { id: "task-title" }, "Task ", h("span", { class: "mono" }, task.id), " ", statusBadge(task.status)),
    h("h2", {}, "Prompt"),
    h("pre", { id: "prompt" }, task.prompt),
    h("dl", { class: "meta" },
      h("dt", {}, "Status"), h("dd", { id: "task-status" }, task.status),
      h("dt", {}, "Submitted by"), h("dd", {}, task.submitted_by || "—"),
      h("dt", {}, "Tenant"), h("dd", {}, task.tenant),
      h("dt", {}, "Created"), h("dd", {}, when(task.created_at)),
      h("dt", {}, "Updated"), h("dd", {}, when(task.updated_at)),
      h("dt", {}, "Plan"), h("dd", {}, task.current_plan_version ? `v${task.current_plan_version}` : "not yet",
        task.approved_plan_version ? ` (approved: v${task.approved_plan_version})` : ""),
      task.gate ? [h("dt", {}, "Waiting for"), h("dd", { id: "task-gate" }, gateText(task.gate, task.gate_expires_at))] : null,
      task.estimate ? [h("dt", {}, "Estimate"), h("dd", { id: "task-estimate" }, estimateText(task.estimate))] : null,
      task.usage || task.budget ? [h("dt", {}, "Spent"), h("dd", { id: "task-usage" }, usageText(task.usage, task.budget))] : null,
      ...meta.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { class: "mono" }, typeof v === "string" ? v : JSON.stringify(v))])),
    task.result ? [h("h2", {}, "Result"), h("pre", { id: "result" }, typeof task.result.summary === "string" ? task.result.summary : JSON.stringify(task.result, null, 2))] : null,
    task.error ? [h("h2", {}, "Error"), h("pre", { id: "task-error" }, brief(task.error))] : null));
}

function gateText(gate, expiresAt) {
  const kind = { plan: "a plan approval", call: "a decision on a tool call", budget: "a raised budget" }[gate.kind] || gate.kind;
  const parts = [kind];
  if (gate.rule) parts.push(`rule ${gate.rule}`);
  if (gate.roles && gate.roles.length) parts.push(`by ${gate.roles.join(" or ")}`);
  if (gate.required > 1) parts.push(`${gate.required} distinct approvers`);
  if (gate.limit) parts.push(`limit reached: ${brief(gate.limit)}`);
  const text = parts.join(" · ");
  return expiresAt ? [text, " · ", expiresIn(expiresAt, gate.on_expiry ? ` (then ${gate.on_expiry})` : "")] : text;
}

// --- decisions -------------------------------------------------------------------------------

function renderDecide(section, state, act, edit) {
  const task = state.task;
  const plan = task.plan;
  const key = JSON.stringify([task.status, plan ? plan.content_hash : "", state.editing, task.gate]);
  if (key === state.decideKey) return; // keep what the operator is typing
  state.decideKey = key;
  const parts = [];
  if (task.status === "awaiting_approval" && plan) {
    const comment = h("input", { type: "text", id: "approve-comment", maxlength: 4000 });
    const reason = h("textarea", { id: "reject-reason", maxlength: 4000 });
    const feedback = h("textarea", { id: "revise-feedback", maxlength: 20000 });
    parts.push(h("h2", {}, "Decision"),
      h("div", { class: "panel", id: "approve-panel" },
        h("p", {}, "Approving binds plan version ", h("strong", { id: "binding-version" }, `v${plan.version}`),
          " with content hash ", h("code", { class: "hash", id: "binding-hash" }, plan.content_hash),
          ": if the plan changes before your approval arrives, the service refuses it."),
        task.estimate ? h("p", { id: "approve-estimate" }, "Estimated cost of running it: ", h("strong", {}, estimateText(task.estimate))) : null,
        task.gate && task.gate.kind === "plan" ? h("p", { class: "muted", id: "plan-gate" }, "Needs ", gateText(task.gate, task.gate_expires_at)) : null,
        field("Comment (optional)", comment),
        h("div", { class: "row" }, h("button", {
          type: "button", class: "primary", id: "approve",
          onclick: () => act(`Approved plan v${plan.version}.`, `/v1/tasks/${task.id}/approve`,
            { plan_version: plan.version, content_hash: plan.content_hash, ...(comment.value.trim() ? { comment: comment.value.trim() } : {}) }),
        }, `Approve plan v${plan.version}`))),
      h("div", { class: "grid2" },
        h("div", { class: "panel" }, field("Reason for rejecting", reason),
          h("div", { class: "row" }, h("button", {
            type: "button", class: "danger", id: "reject",
            onclick: () => act("Rejected.", `/v1/tasks/${task.id}/reject`, reason.value.trim() ? { reason: reason.value.trim() } : {}),
          }, "Reject"))),
        h("div", { class: "panel" }, field("Feedback for the planner", feedback),
          h("div", { class: "row" }, h("button", {
            type: "button", id: "revise",
            onclick: () => {
              if (!feedback.value.trim()) { fail(new Error("Write what the planner should change first.")); feedback.focus(); return; }
              act("Revision requested: the planner is writing a new version.", `/v1/tasks/${task.id}/revise`, { feedback: feedback.value.trim() });
            },
          }, "Ask for a revision")))),
      h("div", { class: "row" }, h("button", { type: "button", id: "edit-plan", onclick: edit, disabled: state.editing }, "Edit the plan")));
  }
  if (!FINAL.has(task.status)) {
    const why = h("input", { type: "text", id: "cancel-reason", maxlength: 4000 });
    parts.push(h("details", { class: "panel" }, h("summary", {}, "Cancel this task"),
      field("Reason (optional)", why),
      h("button", {
        type: "button", class: "danger", id: "cancel",
        onclick: () => act("Cancelled.", `/v1/tasks/${task.id}/cancel`, why.value.trim() ? { reason: why.value.trim() } : {}),
      }, "Cancel task")));
  }
  section.replaceChildren(...parts);
}

// --- in-doubt calls, call gates, budget -----------------------------------------------------

function renderAttention(section, state, act) {
  const task = state.task;
  if (!task) return;
  const key = JSON.stringify([task.status, task.needs_attention, task.gate]);
  if (key === state.attentionKey) return; // keep what the operator is typing
  state.attentionKey = key;
  const parts = [];
  for (const item of task.needs_attention || []) {
    if (item.kind === "call_gate") { parts.push(gatePanel(task, item, act)); continue; }
    const result = h("textarea", { id: `skip-result-${item.tool_call_id}` });
    const path = `/v1/tasks/${task.id}/resolve`;
    const body = (action) => ({ tool_call_id: item.tool_call_id, action, ...(action === "skip" ? { result: result.value } : {}) });
    parts.push(h("div", { class: "panel attention", dataset: { callId: item.tool_call_id } },
      h("h3", {}, "In-doubt call: ", h("span", { class: "mono" }, item.tool), ` in step ${item.step_id}`),
      h("p", {}, "The service cannot tell whether this call ran. Retry it, skip it with a stated result, or fail the step."),
      h("pre", {}, JSON.stringify(item.arguments, null, 2)),
      field("Result to record when skipping", result),
      h("div", { class: "row" },
        h("button", { type: "button", onclick: () => act("Call retried.", path, body("retry")) }, "Retry"),
        h("button", { type: "button", onclick: () => act("Call skipped.", path, body("skip")) }, "Skip with this result"),
        h("button", { type: "button", class: "danger", onclick: () => act("Step failed.", path, body("fail")) }, "Fail the step"))));
  }
  if (task.status === "needs_attention" && task.gate && task.gate.kind === "budget") parts.push(budgetPanel(task, act));
  if (parts.length) parts.unshift(h("h2", {}, "Waiting for you during execution"));
  section.replaceChildren(...parts);
}

function gatePanel(task, item, act) {
  const callId = item.tool_call_id;
  const args = h("textarea", { id: `gate-args-${callId}`, rows: 6, class: "mono" }, JSON.stringify(item.arguments ?? {}, null, 2));
  const tool = h("input", { type: "text", id: `gate-tool-${callId}`, value: item.tool });
  const reason = h("input", { type: "text", id: `gate-reason-${callId}` });
  const argsError = h("div", { class: "field-error", id: uid("err"), dataset: { field: "arguments" } });
  const path = `/v1/tasks/${task.id}/calls/${encodeURIComponent(callId)}/decision`;
  const decide = async (decision) => {
    let parsed = null;
    argsError.textContent = "";
    args.removeAttribute("aria-invalid");
    if (decision === "edit") {
      try {
        parsed = JSON.parse(args.value);
        if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("arguments must be a JSON object");
      } catch (err) {
        argsError.textContent = `Not a JSON object: ${err.message}`;
        args.setAttribute("aria-invalid", "true");
        args.focus();
        return;
      }
    }
    const body = { decision, reason: reason.value.trim() || null, arguments: parsed };
    if (decision === "edit" && tool.value.trim() && tool.value.trim() !== item.tool) body.tool = tool.value.trim();
    const label = { approve: "Call approved.", deny: "Call denied.", edit: "Call approved with edited arguments." }[decision];
    try {
      await act(label, path, body, "POST", true);
    } catch (err) {
      argsError.textContent = err.message;
      args.setAttribute("aria-invalid", "true");
      args.focus();
    }
  };
  args.setAttribute("aria-describedby", argsError.id);
  const gate = task.gate && task.gate.call_id === callId ? task.gate : null;
  return h("div", { class: "panel gate", dataset: { callId } },
    h("h3", {}, "Call gate: ", h("span", { class: "mono" }, item.tool), ` in step ${item.step_id}`),
    h("p", {}, "The policy stopped this call before it was sent; it waits for ",
      gate ? gateText(gate, task.gate_expires_at) : `a decision (rule ${item.rule || "?"})`, "."),
    field("Arguments (JSON; edit them to approve a changed call)", args), argsError,
    field("Tool (an edit may call another tool the step allows)", tool),
    field("Reason (optional; with deny the model is told)", reason),
    h("div", { class: "row" },
      h("button", { type: "button", class: "primary", onclick: () => decide("approve") }, "Approve call"),
      h("button", { type: "button", onclick: () => decide("edit") }, "Approve with edits"),
      h("button", { type: "button", class: "danger", onclick: () => decide("deny") }, "Deny call")));
}

const BUDGET_FIELDS = [["cost_usd", "Cost (USD)"], ["tool_calls", "Tool calls"], ["input_tokens", "Input tokens"],
  ["output_tokens", "Output tokens"], ["wall_seconds", "Wall time (seconds)"]];

function budgetPanel(task, act) {
  const inputs = BUDGET_FIELDS.map(([name, label]) => [name, label, h("input", {
    type: "number", id: `budget-${name}`, min: 0, step: "any", value: task.budget && task.budget[name] !== undefined ? task.budget[name] : "",
  })]);
  return h("div", { class: "panel budget" },
    h("h3", {}, "Budget spent"),
    h("p", {}, `The task paused at its budget (${brief(task.gate.limit)}). Spent: ${usageText(task.usage, task.budget)}. Raise the limits to let it go on.`),
    h("div", { class: "grid2" }, inputs.map(([, label, input]) => field(label, input))),
    h("div", { class: "row" }, h("button", {
      type: "button", class: "primary", id: "raise-budget",
      onclick: () => {
        const body = {};
        for (const [name, , input] of inputs) {
          if (input.value === "") continue;
          const n = Number(input.value);
          body[name] = name === "tool_calls" || name.endsWith("_tokens") ? Math.round(n) : n;
        }
        act("Budget raised: the task goes on.", `/v1/tasks/${task.id}/budget`, body);
      },
    }, "Raise the budget")));
}

// --- plan and versions -----------------------------------------------------------------------

function versionOptions(versions, selected) {
  return versions.map((v) => h("option", { value: v.version, selected: v.version === selected },
    `v${v.version} — ${v.author} — ${when(v.created_at)}`));
}

function renderPlan(section, state) {
  const task = state.task;
  if (!state.versions.length) {
    section.replaceChildren(h("h2", { id: "plan-title" }, "Plan"), h("p", { class: "muted" }, "No plan yet: the planner is working on it."));
    return;
  }
  const select = h("select", { id: "version-select" }, versionOptions(state.versions, state.shown));
  select.addEventListener("change", () => { state.shown = Number(select.value); renderPlan(section, state); document.getElementById("version-select").focus(); });
  const chosen = state.versions.find((v) => v.version === state.shown) || state.versions[state.versions.length - 1];
  const live = task.plan && task.plan.version === chosen.version ? task.plan : null;
  const statusOf = new Map(live ? live.steps.map((s) => [s.id, s]) : []);
  section.replaceChildren(
    h("h2", { id: "plan-title" }, "Plan"),
    h("div", { class: "row" }, field("Show plan version", select)),
    h("p", {}, h("strong", {}, chosen.plan.summary)),
    h("p", { class: "muted" }, `v${chosen.version} by ${chosen.author} · `, h("code", { class: "hash" }, chosen.content_hash),
      chosen.version === task.current_plan_version ? " · current" : "",
      chosen.version === task.approved_plan_version ? " · approved" : ""),
    h("ol", { class: "steps", id: "plan-steps" }, chosen.plan.steps.map((step) => {
      const run = statusOf.get(step.id);
      return h("li", { dataset: { stepId: step.id } },
        h("strong", {}, step.title), " ", h("span", { class: "muted mono" }, `(${step.id})`), " ",
        run ? statusBadge(run.status) : null,
        h("div", {}, step.instruction),
        h("div", { class: "muted" }, "Tools: ", step.tools.length ? h("span", { class: "mono" }, step.tools.join(", ")) : "none"),
        step.depends_on.length ? h("div", { class: "muted" }, "After: ", step.depends_on.join(", ")) : null,
        run && run.output ? h("details", {}, h("summary", {}, "Output"), h("pre", {}, run.output)) : null,
        run && run.error ? h("pre", { class: "field-error" }, brief(run.error)) : null);
    })));
}

function renderDiff(section, state) {
  if (state.versions.length < 2) { section.replaceChildren(); return; }
  const from = h("select", { id: "diff-from" }, versionOptions(state.versions, state.diffFrom));
  const to = h("select", { id: "diff-to" }, versionOptions(state.versions, state.diffTo));
  const redraw = (focus) => { state.diffFrom = Number(from.value); state.diffTo = Number(to.value); renderDiff(section, state); document.getElementById(focus).focus(); };
  from.addEventListener("change", () => redraw("diff-from"));
  to.addEventListener("change", () => redraw("diff-to"));
  const a = state.versions.find((v) => v.version === state.diffFrom);
  const b = state.versions.find((v) => v.version === state.diffTo);
  const lines = diffLines(planLines(a.plan), planLines(b.plan));
  const added = lines.filter((l) => l.op === "add").length;
  const removed = lines.filter((l) => l.op === "del").length;
  const sign = { add: "+ ", del: "- ", same: "  " };
  const label = { add: "added: ", del: "removed: ", same: "" };
  section.replaceChildren(
    h("h2", { id: "diff-title" }, "Compare versions"),
    h("div", { class: "row" }, field("From version", from), field("To version", to)),
    h("p", { class: "muted", id: "diff-summary" }, a.version === b.version ? "The same version." : `${added} lines added, ${removed} removed.`),
    h("div", { class: "diff", id: "plan-diff", role: "region", "aria-label": `Differences from v${a.version} to v${b.version}` },
      lines.map((l) => h("div", { class: l.op }, h("span", { class: "visually-hidden" }, label[l.op]), sign[l.op], l.text))));
}

// --- event log -------------------------------------------------------------------------------

function folded(seq, summary, body, cls) {
  return h("details", { class: cls }, h("summary", {}, seq, summary), h("pre", {}, typeof body === "string" ? body : JSON.stringify(body, null, 2)));
}

function appendEvent(log, type, event) {
  const d = event.data || {};
  const seq = h("span", { class: "muted mono" }, `#${event.seq} `);
  let item;
  const last = log.lastElementChild;
  if (type === "text_delta") {
    if (last && last.dataset.textStep === d.step_id) {
      last.querySelector("pre").append(d.text);
      last.dataset.lastSeq = event.seq;
      return;
    }
    item = h("li", { dataset: { textStep: d.step_id } }, seq, `text from step ${d.step_id}`, h("pre", {}, d.text));
  } else if (type === "tool_call_started") {
    item = h("li", {}, folded(seq, `tool call ${d.tool} (step ${d.step_id})${d.retry ? " — retry" : ""}`, d.arguments));
  } else if (type === "tool_call_completed") {
    item = h("li", { class: d.is_error ? "error" : "" },
      folded(seq, `${d.tool} ${d.is_error ? "returned an error" : "returned"} in ${Math.round(d.duration_ms)} ms`, d.result + (d.truncated ? "\n…(truncated)" : "")));
  } else if (type === "plan_proposed") {
    item = h("li", {}, seq, `plan v${d.plan_version} proposed by ${d.author} (${d.plan.steps.length} steps)`, d.offline_test ? " — offline test model" : "");
  } else if (type === "call_approval_required") {
    item = h("li", {}, folded(seq, `call gate: ${d.tool} in step ${d.step_id} waits for a decision (rule ${d.rule})`, d.arguments));
  } else if (type === "call_decided") {
    item = h("li", {}, folded(seq, `call ${d.call_id}: ${d.decision} by ${d.actor || "?"}${d.reason ? ` — ${d.reason}` : ""}; calls ${d.tool}`, d.arguments));
  } else {
    const error = type.endsWith("_failed") || type === "tool_call_refused" || type === "plan_invalid";
    const { plan, ...rest } = d;
    item = h("li", { class: error ? "error" : "" }, seq, h("strong", {}, type.replace(/_/g, " ")), " ", brief(rest).slice(0, 400));
  }
  item.dataset.type = type;
  item.dataset.seq = event.seq;
  log.append(item);
  log.scrollTop = log.scrollHeight;
}

