// The two dialogs of index.html (a confirmation, the token prompt) and the notices.
// <dialog> gives the focus trap, Escape to cancel and the return of focus for free.

import { clear, h } from "./util.js";

const $ = (id) => document.getElementById(id);

// Cancel buttons are not submit buttons: Enter in a field submits with the form's first
// submit button, and that must be the one that goes ahead.
for (const b of document.querySelectorAll("dialog [data-close]")) {
  b.addEventListener("click", () => b.closest("dialog").close("cancel"));
}

// Resolves to null when cancelled, else to the values of the extra fields ({} if none).
// fields: [{name, label, options: [[value, text], ...], value}] shown as <select>s.
export function confirmAction({ title, message, confirm = "Confirm", danger = false, fields = [] }) {
  const dialog = $("confirm-dialog");
  $("confirm-title").textContent = title;
  $("confirm-message").textContent = message;
  const ok = $("confirm-ok");
  ok.textContent = confirm;
  ok.className = `btn ${danger ? "btn-danger" : "btn-primary"}`;
  const extra = clear($("confirm-extra"));
  for (const f of fields) {
    const id = `confirm-field-${f.name}`;
    extra.append(h("div", { class: "field" },
      h("label", { for: id }, f.label),
      h("select", { id, name: f.name },
        f.options.map(([v, text]) => h("option", { value: v, selected: v === f.value }, text)))));
  }
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      if (dialog.returnValue !== "ok") { resolve(null); return; }
      const values = {};
      for (const f of fields) values[f.name] = $(`confirm-field-${f.name}`).value;
      resolve(values);
    }, { once: true });
    dialog.showModal();
    // the safe choice has the focus: Enter on an unread dialog changes nothing
    $("confirm-cancel").focus();
  });
}

let asking = null;

// Asks for a token (one prompt however many calls wait for it). Resolves to the token, or
// to null when the user cancels.
export function askToken(error) {
  if (asking) return asking;
  const dialog = $("token-dialog");
  const input = $("token-input");
  const err = $("token-error");
  err.hidden = !error;
  err.textContent = error || "";
  input.value = "";
  dialog.returnValue = "";
  asking = new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      asking = null;
      const token = input.value.trim();
      input.value = "";
      resolve(dialog.returnValue === "ok" && token ? token : null);
    }, { once: true });
    dialog.showModal();
    input.focus();
  });
  return asking;
}

// A short notice in the corner, read out by screen readers (role=status on the region).
export function notify(message, kind = "ok", ms = 5000) {
  const box = $("toasts");
  const el = h("div", { class: `toast toast-${kind}` }, message);
  box.append(el);
  setTimeout(() => el.remove(), ms);
}
