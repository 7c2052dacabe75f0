// Plan versions as lines of text, and a line diff (longest common subsequence) between two of them.

export function planLines(plan) {
  const lines = [`summary: ${plan.summary}`];
  for (const step of plan.steps) {
    lines.push(`- step ${step.id}: ${step.title}`);
    for (const line of String(step.instruction).split("\n")) lines.push(`    instruction: ${line}`);
    lines.push(`    tools: ${step.tools.join(", ") || "(none)"}`);
    lines.push(`    depends on: ${step.depends_on.join(", ") || "(nothing)"}`);
  }
  return lines;
}

// [{op: "same"|"add"|"del", text}] turning `a` into `b`.
export function diffLines(a, b) {
  const n = a.length; const m = b.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i -= 1) {
    for (let j = m - 1; j >= 0; j -= 1) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const out = [];
  let i = 0; let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) { out.push({ op: "same", text: a[i] }); i += 1; j += 1; }
    else if (lcs[i + 1][j] >= lcs[i][j + 1]) { out.push({ op: "del", text: a[i] }); i += 1; }
    else { out.push({ op: "add", text: b[j] }); j += 1; }
  }
  while (i < n) { out.push({ op: "del", text: a[i] }); i += 1; }
  while (j < m) { out.push({ op: "add", text: b[j] }); j += 1; }
  return out;
}
