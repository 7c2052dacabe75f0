// The structured plan editor: summary, and per step id, title, instruction, tools (from the
// catalogue) and dependencies; add, remove and reorder steps. Saving PUTs the plan as a new
// version; the service's validation errors are shown next to the field they name.

import { api } from "./api.js";
import { field, h, uid } from "./dom.js";
import { fail } from "./ui.js";

const copy = (plan) => ({
  summary: plan.summary,
  steps: plan.steps.map((s) => ({ id: s.id, title: s.title, instruction: s.instruction, tools: [...s.tools], depends_on: [...s.depends_on] })),
});

export async function editorSection(section, state, { signal, close, saved }) {
  if (!state.draft || state.draftBase !== state.task.current_plan_version) {
    const current = state.versions.find((v) => v.version === state.task.current_plan_version);
    state.draft = copy(current.plan);
    state.draftBase = current.version;
  }
  if (!state.tools) {
    try { state.tools = (await api("/v1/tools", { signal })).tools.map((t) => t.name); } catch (err) { fail(err); state.tools = []; }
  }
  draw(section, state, { signal, close, saved });
}

function draw(section, state, hooks, focusId) {
  const draft = state.draft;
  const errors = new Map(); // field key -> error element
  const slot = (key, control) => {
    const el = h("div", { class: "field-error", id: uid("err"), dataset: { field: key } });
    errors.set(key, { el, control });
    if (control) control.setAttribute("aria-describedby", el.id);
    return el;
  };
  const redraw = (focus) => draw(section, state, hooks, focus);
  const general = slot("plan", null);
  const summary = h("textarea", { id: "edit-summary" }, draft.summary);
  summary.addEventListener("input", () => { draft.summary = summary.value; });

  const depsFor = (step, i) => {
    const others = draft.steps.filter((s) => s !== step).map((s) => s.id);
    const deps = h("fieldset", { class: "deps", id: `edit-step-${i}-depends_on` }, h("legend", {}, "Runs after"),
      others.length ? others.map((other) => {
        const box = h("input", { type: "checkbox", value: other, checked: step.depends_on.includes(other) });
        box.addEventListener("change", () => {
          step.depends_on = box.checked ? [...step.depends_on, other] : step.depends_on.filter((d) => d !== other);
        });
        return h("label", { class: "inline" }, box, h("span", { class: "mono" }, other));
      }) : h("span", { class: "muted" }, "no other step"));
    return deps;
  };
  const steps = draft.steps.map((step, i) => {
    const id = h("input", { type: "text", id: `edit-step-${i}-id`, value: step.id, maxlength: 40 });
    let before = step.id;
    id.addEventListener("input", () => { step.id = id.value; });
    id.addEventListener("change", () => { // rename the dependencies on it, refresh the choices in place
      for (const s of draft.steps) s.depends_on = s.depends_on.map((d) => (d === before ? step.id : d));
      before = step.id;
      draft.steps.forEach((s, j) => {
        const old = document.getElementById(`edit-step-${j}-depends_on`);
        if (!old || s === step) return;
        const fresh = depsFor(s, j);
        old.replaceWith(fresh);
        const slotted = errors.get(`steps.${j}.depends_on`);
        if (slotted) { slotted.control = fresh; fresh.setAttribute("aria-describedby", slotted.el.id); }
      });
    });
    const title = h("input", { type: "text", id: `edit-step-${i}-title`, value: step.title });
    title.addEventListener("input", () => { step.title = title.value; });
    const instruction = h("textarea", { id: `edit-step-${i}-instruction` }, step.instruction);
    instruction.addEventListener("input", () => { step.instruction = instruction.value; });
    const toolNames = [...new Set([...state.tools, ...step.tools])];
    const tools = h("fieldset", { class: "tools", id: `edit-step-${i}-tools` }, h("legend", {}, "Tools this step may call"),
      toolNames.map((name) => {
        const box = h("input", { type: "checkbox", value: name, checked: step.tools.includes(name) });
        box.addEventListener("change", () => {
          step.tools = box.checked ? [...step.tools, name] : step.tools.filter((t) => t !== name);
        });
        return h("label", { class: "inline" }, box, h("span", { class: "mono" }, name));
      }));
    const deps = depsFor(step, i);
    const move = (to) => {
      const [moved] = draft.steps.splice(i, 1);
      draft.steps.splice(to, 0, moved);
      redraw(`edit-step-${to}-${to < i ? "up" : "down"}`);
    };
    return h("fieldset", { class: "step", dataset: { index: i } }, h("legend", {}, `Step ${i + 1}`),
      field("Step id", id), slot(`steps.${i}.id`, id),
      field("Title", title), slot(`steps.${i}.title`, title),
      field("Instruction", instruction), slot(`steps.${i}.instruction`, instruction),
      tools, slot(`steps.${i}.tools`, tools),
      deps, slot(`steps.${i}.depends_on`, deps),
      h("div", { class: "row" },
        h("button", { type: "button", id: `edit-step-${i}-up`, disabled: i === 0, onclick: () => move(i - 1), "aria-label": `Move step ${i + 1} up` }, "Move up"),
        h("button", { type: "button", id: `edit-step-${i}-down`, disabled: i === draft.steps.length - 1, onclick: () => move(i + 1), "aria-label": `Move step ${i + 1} down` }, "Move down"),
        h("button", {
          type: "button", class: "danger", id: `edit-step-${i}-remove`, "aria-label": `Remove step ${i + 1}`,
          onclick: () => {
            const gone = step.id;
            draft.steps.splice(i, 1);
            for (const s of draft.steps) s.depends_on = s.depends_on.filter((d) => d !== gone);
            redraw("edit-add-step");
          },
        }, "Remove step")));
  });

  const form = h("form", { id: "plan-editor", novalidate: true },
    h("h2", {}, `Edit plan v${state.draftBase}`),
    h("p", { class: "muted" }, "Saving stores a new plan version, written by you; it then needs another approver's decision."),
    general,
    field("Summary", summary), slot("summary", summary),
    steps,
    h("div", { class: "row" },
      h("button", {
        type: "button", id: "edit-add-step",
        onclick: () => {
          const taken = new Set(draft.steps.map((s) => s.id));
          let n = draft.steps.length + 1;
          while (taken.has(`step-${n}`)) n += 1;
          draft.steps.push({ id: `step-${n}`, title: "", instruction: "", tools: [], depends_on: [] });
          redraw(`edit-step-${draft.steps.length - 1}-id`);
        },
      }, "Add a step"),
      h("button", { type: "submit", class: "primary", id: "edit-save" }, "Save as a new version"),
      h("button", { type: "button", id: "edit-discard", onclick: () => { state.draft = null; hooks.close(); } }, "Discard changes")));

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    fail(null);
    for (const { el, control } of errors.values()) { el.textContent = ""; if (control) control.removeAttribute("aria-invalid"); }
    try {
      await api(`/v1/tasks/${state.task.id}/plan`, { method: "PUT", body: { base_version: state.draftBase, plan: draft }, signal: hooks.signal });
      state.draft = null;
      await hooks.saved();
    } catch (err) {
      if (hooks.signal.aborted) return;
      const shown = showErrors(err, draft, errors);
      if (!shown) fail(err);
    }
  });

  section.replaceChildren(form);
  if (focusId) { const el = document.getElementById(focusId); if (el) el.focus(); }
}

// Put each of the service's complaints next to its field; returns whether any was placed.
function showErrors(err, draft, errors) {
  const messages = [];
  for (const f of (err.details && err.details.fields) || []) messages.push([f.field.replace(/^plan\.?/, ""), f.message]);
  for (const p of (err.details && err.details.problems) || []) messages.push(["", p]);
  if (!messages.length) return false;
  let first = null;
  for (const [path, message] of messages) {
    const key = locate(path, message, draft);
    const target = errors.get(key) || errors.get("plan");
    target.el.textContent = target.el.textContent ? `${target.el.textContent}; ${message}` : message;
    if (target.control) target.control.setAttribute("aria-invalid", "true");
    if (!first) first = target.control || target.el;
  }
  if (first && first.focus) first.focus();
  return true;
}

function locate(path, message, draft) {
  const inMessage = /steps\.(\d+)\.(\w+)/.exec(message);
  const inPath = /^steps\.(\d+)\.(\w+)/.exec(path);
  const hit = inPath || inMessage;
  if (hit) return `steps.${hit[1]}.${hit[2]}`;
  if (path === "summary") return "summary";
  const named = /step (id )?'([^']*)'/.exec(message);
  if (named) {
    const index = draft.steps.findIndex((s) => s.id === named[2]);
    if (index >= 0) {
      let name = "id";
      if (named[1]) name = "id";
      else if (/tool/.test(message)) name = "tools";
      else if (/depends/.test(message)) name = "depends_on";
      else if (/instruction/.test(message)) name = "instruction";
      return `steps.${index}.${name}`;
    }
  }
  return "plan";
}
