// Small DOM helpers: build elements without innerHTML (no markup from data, ever).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "value") el.value = value;
    else if (key === "checked") el.checked = !!value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

let counter = 0;
export function uid(prefix = "f") {
  counter += 1;
  return `${prefix}-${counter}`;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
}

export function button(label, onclick, attrs = {}) {
  return h("button", { type: "button", class: "btn", ...attrs, onclick }, label);
}

// A labelled control with an error slot, wired with aria-describedby.
export function field(labelText, control, { hint, required } = {}) {
  const id = control.id || uid("in");
  control.id = id;
  const errorId = `${id}-err`;
  const hintId = hint ? `${id}-hint` : null;
  control.setAttribute("aria-describedby", [hintId, errorId].filter(Boolean).join(" "));
  if (required) control.setAttribute("aria-required", "true");
  const wrapper = h("div", { class: "field" },
    h("label", { for: id }, labelText, required ? h("span", { class: "req", "aria-hidden": "true" }, " *") : null),
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
    control,
    h("p", { class: "error", id: errorId, hidden: true }),
  );
  // An error goes as soon as the field is changed: the next save checks it again.
  const clear = () => { if (control.getAttribute("aria-invalid")) setError(control, ""); };
  control.addEventListener("input", clear);
  control.addEventListener("change", clear);
  return wrapper;
}

export function setError(control, message) {
  const slot = document.getElementById(`${control.id}-err`);
  if (message) control.setAttribute("aria-invalid", "true");
  else control.removeAttribute("aria-invalid");
  if (slot) {
    slot.textContent = message || "";
    slot.hidden = !message;
  }
}

export function select(name, options, value, attrs = {}) {
  return h("select", { name, ...attrs },
    options.map(([code, label]) => h("option", { value: code, selected: code === value }, label)));
}

// A group of radios or checkboxes as a fieldset with a legend (48 px rows).
export function choiceGroup(legend, name, options, { type = "radio", value, required, describedBy } = {}) {
  const values = Array.isArray(value) ? value : [value];
  const errorId = uid("grp-err");
  const fs = h("fieldset", { class: "choices", "aria-describedby": describedBy ? `${describedBy} ${errorId}` : errorId },
    h("legend", {}, legend, required ? h("span", { class: "req", "aria-hidden": "true" }, " *") : null));
  for (const [code, label] of options) {
    const id = uid(name);
    fs.append(h("div", { class: "choice" },
      h("input", { type, id, name, value: code, checked: values.includes(code) }),
      h("label", { for: id }, label)));
  }
  fs.append(h("p", { class: "error", id: errorId, hidden: true }));
  fs.dataset.errorId = errorId;
  fs.addEventListener("change", () => { if (fs.getAttribute("aria-invalid")) groupError(fs, ""); });
  return fs;
}

export function groupError(fieldset, message) {
  const slot = document.getElementById(fieldset.dataset.errorId);
  if (slot) {
    slot.textContent = message || "";
    slot.hidden = !message;
  }
  if (message) fieldset.setAttribute("aria-invalid", "true");
  else fieldset.removeAttribute("aria-invalid");
}

export function checkedValues(fieldset) {
  return [...fieldset.querySelectorAll("input:checked")].map((input) => input.value);
}

export function fmtTime(iso) {
  if (!iso) return "";
  const d = typeof iso === "number" ? new Date(iso) : new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return d.toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" });
}

// A datetime-local value (local wall time) from a Date, and back to ISO with offset.
export function toLocalInput(date) {
  const d = new Date(date);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function fromLocalInput(value) {
  if (!value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}
