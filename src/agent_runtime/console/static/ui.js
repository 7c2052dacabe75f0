// The page-wide status line and alert box.

import { ApiError } from "./api.js";

const statusLine = document.getElementById("status");
const alertBox = document.getElementById("alert");

export function say(text) { statusLine.textContent = text; }

export function fail(err) {
  if (!err) { alertBox.hidden = true; alertBox.textContent = ""; return; }
  alertBox.hidden = false;
  alertBox.textContent = err instanceof ApiError ? `${err.message} (${err.code}, HTTP ${err.status})` : String(err.message || err);
}

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}
