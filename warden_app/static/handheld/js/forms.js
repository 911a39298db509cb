// Observation, street audit and audit item screens. Code lists come from the form version
// in the manifest (the version a record names, for audits and their items).

import { config, describe, options } from "./config.js";
import {
  button, checkedValues, choiceGroup, field, fmtTime, fromLocalInput, groupError, h, select, setError,
  toLocalInput,
} from "./dom.js";
import { LocationField } from "./geo.js";
import { PhotoField } from "./photos.js";

const FUTURE_SLACK_MS = 4 * 60 * 1000;

function latest(local, type) {
  const spec = local.state.manifest && local.state.manifest.record_types
    && local.state.manifest.record_types[type];
  return spec ? { version: spec.form_version, schema: spec.schema, code_lists: spec.code_lists || null } : null;
}

// The form a record type had at a version (falls back to the newest known).
function formFor(local, type, version) {
  const known = local.state.forms && local.state.forms[type];
  if (version !== undefined && version !== null && known && known[version]) return { version, ...known[version] };
  return latest(local, type) || { version: null, schema: null, code_lists: null };
}

function enumOf(schema, name) {
  const prop = schema && schema.properties && schema.properties[name];
  if (!prop) return null;
  const list = prop.enum || (prop.items && prop.items.enum);
  return list ? list.filter((v) => v !== null) : null;
}

function maxPhotoBytes(local) {
  const limits = local.state.manifest && local.state.manifest.limits;
  return (limits && limits.max_attachment_bytes) || 10 * 1024 * 1024;
}

function areas(local) {
  return (local.state.session && local.state.session.areas) || [];
}

// Where the handheld's records are, as dots to find one's way on a map without a base map.
function places(local) {
  const out = [];
  for (const rec of local.list()) {
    const c = rec.local && rec.local.location && rec.local.location.coordinates;
    if (Array.isArray(c) && typeof c[0] === "number" && typeof c[1] === "number") out.push({ lat: c[1], lng: c[0] });
    if (out.length >= 500) break;
  }
  return out;
}

function banners(ctx, rec) {
  const { local } = ctx;
  if (!rec) return [];
  const out = [];
  const mine = local.isMine(rec);
  if (!mine) {
    out.push(h("p", { class: "banner", role: "note", id: "read-only-note" },
      h("strong", {}, `Recorded by ${rec.server.author}: read only. `),
      "You can look at it but not change it."));
  }
  const review = rec.server && rec.server.review;
  if (review && review.state === "has_issues") {
    out.push(h("div", { class: "banner warn", role: "note", id: "review-note" },
      h("strong", {}, "Returned with issues. "), `Supervisor's note: ${review.note || "(none)"}`,
      mine ? h("p", { class: "hint" }, "Correct the record and save: it goes back to your supervisor.") : null));
  } else if (review && review.state === "approved") {
    out.push(h("div", { class: "banner ok", role: "note" }, "Approved by your supervisor: locked, no more changes."));
  } else if (review && review.state === "rejected") {
    out.push(h("div", { class: "banner bad", role: "note" }, `Rejected by your supervisor. ${review.note || ""}`));
  }
  if (rec.issue) {
    out.push(h("div", { class: "banner bad", role: "alert" },
      h("strong", {}, "The server did not accept the last change. "), ctx.rejectedWords(rec.issue.code, rec.issue.message, rec.issue.errors),
      ctx.errorsList(rec.issue.errors),
      mine ? h("p", { class: "hint" }, rec.server ? "The form shows what the server holds; edit and save again."
        : "Correct it and save: it will be sent again.") : null));
  }
  if (rec.conflict) {
    out.push(h("div", { class: "banner warn", role: "note" }, conflictReason(rec.conflict.reason),
      mine ? " Your values are kept for your supervisor to decide; the form shows the server's." : null));
  }
  return out;
}

// The server's reason for a conflict (push result or sync/status), in the warden's words.
const CONFLICT_REASONS = {
  fields: "Someone else changed the same fields.",
  location: "You and someone else both moved this record's location.",
  review_locked: "Your supervisor approved this record while you were changing it.",
  deleted: "This record was deleted on the server while you were changing it.",
};

function conflictReason(reason) {
  return CONFLICT_REASONS[reason] || "Your change clashed with a change on the server.";
}

// Personal fields the server left out of someone else's record (a pull is redacted for its
// reader, docs/sync.md): shown as "Withheld", never as an empty field.
function withheld(local, rec) {
  if (!rec || !rec.server || local.isMine(rec)) return new Set();
  const spec = local.state.manifest && local.state.manifest.record_types
    && local.state.manifest.record_types[rec.type];
  const personal = (spec && spec.personal_fields) || [];
  const data = rec.server.data || {};
  return new Set(personal.filter((name) => !(name in data)));
}

function notFound(ctx) {
  ctx.render("missing", "Not on this handheld",
    h("p", {}, "This record is no longer on this handheld (deleted, or no longer in your areas)."),
    h("a", { class: "btn secondary", href: "#home" }, "Home"));
}

function focusFirstError(form) {
  const bad = form.querySelector("[aria-invalid=true]");
  if (bad) {
    const target = bad.matches("fieldset") ? bad.querySelector("input") : bad;
    (target || bad).focus();
  }
}

function textarea(id, value, maxlength = 4000) {
  const el = h("textarea", { id, rows: 4, maxlength });
  el.value = value || "";
  return el;
}

function locationOk(loc) {
  const value = loc.value();
  loc.setError(value ? "" : "A location is needed: wait for a good GPS fix, or place a pin on the map.");
  return value;
}

// --- persons involved (personal data) ----------------------------------------------------------

class PersonsField {
  constructor(list, disabled) {
    this.disabled = disabled;
    this.rows = [];
    this.container = h("div", { class: "persons" });
    this.element = h("fieldset", { class: "persons-field" },
      h("legend", {}, "Persons involved"),
      h("p", { class: "hint" }, "Personal data: record only what is needed."),
      this.container,
      disabled ? null : button("Add a person", () => { this.add({}); this.rows.at(-1).description.focus(); },
        { class: "btn secondary", id: "add-person" }));
    for (const person of list) this.add(person);
  }

  add(person) {
    const n = this.rows.length + 1;
    const description = h("input", { id: `person-${n}-description`, maxlength: 1000 });
    description.value = person.description || "";
    const name = h("input", { id: `person-${n}-name`, maxlength: 1000, autocomplete: "off" });
    name.value = person.name || "";
    const age = h("input", { id: `person-${n}-age`, type: "number", inputmode: "numeric", min: 0, max: 120 });
    age.value = person.approx_age ?? "";
    const row = { original: person, description, name, age };
    row.element = h("fieldset", { class: "person" }, h("legend", {}, `Person ${n}`),
      field(`Description of person ${n}`, description, { hint: "Appearance, clothing" }),
      field(`Name of person ${n}, if known`, name),
      field(`Approximate age of person ${n}`, age),
      this.disabled ? null : button(`Remove person ${n}`, () => this.remove(row), { class: "btn small secondary" }));
    this.rows.push(row);
    this.container.append(row.element);
  }

  remove(row) {
    this.rows = this.rows.filter((r) => r !== row);
    row.element.remove();
  }

  value() {
    const out = [];
    for (const row of this.rows) {
      const person = { ...row.original };
      const description = row.description.value.trim();
      const name = row.name.value.trim();
      const age = row.age.value === "" ? null : Number(row.age.value);
      if (!description && !name && age === null) continue;
      person.description = description;
      if (name) person.name = name;
      else delete person.name;
      if (age !== null && Number.isFinite(age)) person.approx_age = age;
      else delete person.approx_age;
      out.push(person);
    }
    return out;
  }
}

// A datetime that keeps its stored value unless the user changed the minute shown.
function keptTime(input, original) {
  if (original && input.value === toLocalInput(original)) return original;
  return fromLocalInput(input.value);
}

// --- observation ------------------------------------------------------------------------------

export function showObservation(ctx, id) {
  const { local } = ctx;
  const isNew = id === "new";
  const rec = isNew ? null : local.get("observation", id);
  if (!isNew && !rec) return notFound(ctx);
  const editable = isNew || local.canEdit(rec);
  const d = rec ? rec.local : {};
  const hidden = withheld(local, rec);
  const form_ = formFor(local, "observation", d.form_version);
  const labels = config.labels;
  const qualifierCodes = enumOf(form_.schema, "qualifier") || Object.keys(labels.qualifier);
  const incidentCodes = enumOf(form_.schema, "incident_type") || Object.keys(labels.incident_type);
  const actionCodes = enumOf(form_.schema, "action_taken") || Object.keys(labels.action_taken);

  const qualifier = choiceGroup("Qualifier", "qualifier", options("qualifier", qualifierCodes),
    { value: d.qualifier, required: true });
  const incident = select("incident_type", [["", "Choose the incident type…"],
    ...options("incident_type", incidentCodes)], d.incident_type || "", { id: "obs-incident" });
  const observed = h("input", { type: "datetime-local", id: "obs-observed",
    value: toLocalInput(d.observed_at || Date.now()) });
  const description = textarea("obs-description", d.description);
  const actions = choiceGroup("Action taken", "action_taken", options("action_taken", actionCodes),
    { type: "checkbox", value: d.action_taken || [] });
  const persons = new PersonsField(d.persons_involved || [], !editable);
  const photos = new PhotoField({ existing: d.photos || [], local, maxBytes: maxPhotoBytes(local), disabled: !editable });
  if (!editable) {
    ctx.onLeave(() => photos.destroy());
    return showObservationFacts(ctx, rec, hidden, photos);
  }
  const loc = new LocationField({ areas: areas(local), places: places(local), existing: rec ? d : null });
  ctx.onLeave(() => { photos.destroy(); loc.destroy(); });
  const save = h("button", { type: "submit", class: "btn primary", id: "save-observation" },
    isNew ? "Save observation" : "Save changes");
  const form = h("form", { class: "stack", novalidate: true, id: "observation-form", "data-draft": editable },
    banners(ctx, rec),
    h("fieldset", { class: "bare", disabled: !editable },
      h("legend", { class: "visually-hidden" }, "Observation"),
      qualifier,
      field("Incident type", incident, { required: true }),
      field("Observed at", observed, { required: true }),
      field("Description", description, { hint: "What happened, where exactly" }),
      actions,
      persons.element),
    photos.element,
    loc.element,
    h("div", { class: "row" }, editable ? save : null, h("a", { class: "btn secondary", href: "#home" }, "Back")));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let ok = true;
    const q = checkedValues(qualifier)[0];
    groupError(qualifier, q ? "" : "Choose a qualifier.");
    ok = ok && !!q;
    setError(incident, incident.value ? "" : "Choose the incident type.");
    ok = ok && !!incident.value;
    const when = keptTime(observed, d.observed_at);
    const future = when && new Date(when).getTime() > Date.now() + FUTURE_SLACK_MS;
    setError(observed, !when ? "Enter when it was observed." : future ? "That time is in the future." : "");
    ok = ok && when && !future;
    const where = locationOk(loc);
    ok = ok && !!where;
    if (!ok) {
      focusFirstError(form);
      if (!where) loc.focus();
      return;
    }
    const data = {
      qualifier: q, incident_type: incident.value, observed_at: when, description: description.value.trim(),
      action_taken: checkedValues(actions), persons_involved: persons.value(), ...where, photos: photos.value(),
    };
    if (isNew && Number.isInteger(form_.version)) data.form_version = form_.version;
    save.disabled = true;
    const savedId = isNew ? crypto.randomUUID() : id;
    await local.save("observation", savedId, data, photos.newPhotos());
    ctx.saved("observation", savedId);
    ctx.go("#home");
  });
  ctx.render("observation", isNew ? "New observation" : describe("observation", d), form);
  return null;
}

// A record this user may not change (someone else's, or approved): what it says, as text,
// not as a form that looks fillable; withheld personal fields say so.
function showObservationFacts(ctx, rec, hidden, photos) {
  const d = rec.local;
  const labels = config.labels;
  const withheldText = h("em", { class: "withheld" }, "Withheld: not shared with your organisation.");
  const persons = (d.persons_involved || []).map((p, i) => h("li", {}, `Person ${i + 1}: `
    + [p.description, p.name, p.approx_age !== undefined && p.approx_age !== null ? `about ${p.approx_age}` : null]
      .filter(Boolean).join(", ")));
  const row = (term, id, value) => [h("dt", {}, term), h("dd", { id }, value)];
  ctx.render("observation", describe("observation", d),
    banners(ctx, rec),
    h("dl", { class: "facts", id: "observation-facts" },
      row("Qualifier", "fact-qualifier", labels.qualifier[d.qualifier] || "Not given"),
      row("Incident type", "fact-incident", labels.incident_type[d.incident_type] || "Not given"),
      row("Observed at", "fact-observed", fmtTime(d.observed_at) || "Not given"),
      row("Description", "fact-description", hidden.has("description") ? withheldText.cloneNode(true)
        : d.description || "None"),
      row("Action taken", "fact-actions", (d.action_taken || []).map((a) => labels.action_taken[a] || a).join(", ")
        || "None"),
      row("Persons involved", "fact-persons", hidden.has("persons_involved") ? withheldText.cloneNode(true)
        : persons.length ? h("ul", { class: "plain" }, persons) : "None"),
      row("Location", "fact-location", `${labels.fix_source[d.fix_source] || "Not recorded"}`
        + `${d.accuracy_m ? ` (±${Math.round(d.accuracy_m)} m)` : ""}`),
      row("Status", "fact-status", h("span", { class: "badges" }, ctx.recordBadges(ctx.local, rec)))),
    hidden.has("photos") ? h("p", { id: "fact-photos" }, h("strong", {}, "Photos: "), withheldText.cloneNode(true))
      : photos.element,
    h("div", { class: "row" }, h("a", { class: "btn secondary", href: "#home" }, "Back")));
  return null;
}

// --- street audit -----------------------------------------------------------------------------

export function showAuditDetails(ctx, id) {
  const { local } = ctx;
  const isNew = !id;
  const rec = isNew ? null : local.get("street_audit", id);
  if (!isNew && !rec) return notFound(ctx);
  const editable = isNew || local.canEdit(rec);
  const d = rec ? rec.local : {};
  const form_ = formFor(local, "street_audit", d.form_version);
  const title = h("input", { id: "audit-title", maxlength: 200, value: d.title || "" });
  const notes = textarea("audit-notes", d.notes);
  const photos = new PhotoField({ existing: d.photos || [], local, maxBytes: maxPhotoBytes(local), disabled: !editable });
  const loc = new LocationField({ areas: areas(local), places: places(local), existing: rec ? d : null });
  ctx.onLeave(() => { photos.destroy(); loc.destroy(); });
  const error = h("p", { class: "error banner", role: "alert", hidden: true });
  const save = h("button", { type: "submit", class: "btn primary", id: "save-audit" },
    isNew ? "Start audit" : "Save changes");
  const form = h("form", { class: "stack", novalidate: true, id: "audit-form", "data-draft": editable },
    banners(ctx, rec),
    h("fieldset", { class: "bare", disabled: !editable },
      h("legend", { class: "visually-hidden" }, "Street audit"),
      field("Title or route", title, { hint: "e.g. Market Street, north side" }),
      field("Notes", notes)),
    photos.element,
    editable ? loc.element : null,
    error,
    h("div", { class: "row" }, editable ? save : null,
      h("a", { class: "btn secondary", href: isNew ? "#home" : `#audit/${id}` }, "Back")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (isNew && !Number.isInteger(form_.version)) {
      error.textContent = "The audit form has not been received yet: sync once with a connection.";
      error.hidden = false;
      return;
    }
    const where = locationOk(loc);
    if (!where) {
      loc.focus();
      return;
    }
    const data = { title: title.value.trim(), notes: notes.value.trim(), ...where, photos: photos.value() };
    if (isNew) {
      data.started_at = new Date().toISOString();
      data.form_version = form_.version;
    }
    save.disabled = true;
    const auditId = isNew ? crypto.randomUUID() : id;
    await local.save("street_audit", auditId, data, photos.newPhotos());
    ctx.saved("street_audit", auditId);
    ctx.go(`#audit/${auditId}`);
  });
  ctx.render("audit-details", isNew ? "Start street audit" : "Audit details", form);
  return null;
}

export function showAudit(ctx, id) {
  const { local } = ctx;
  const rec = local.get("street_audit", id);
  if (!rec) return notFound(ctx);
  const d = rec.local;
  const editable = local.canEdit(rec);
  const items = local.itemsOf(id);
  const finish = button("Finish audit", async () => {
    finish.disabled = true;
    await local.save("street_audit", id, { finished_at: new Date().toISOString() });
    ctx.saved("street_audit", id);
    ctx.go(`#audit/${id}`);
  }, { class: "btn primary", id: "finish-audit" });
  ctx.render("audit", describe("street_audit", d),
    banners(ctx, rec),
    h("dl", { class: "facts" },
      h("dt", {}, "Started"), h("dd", {}, fmtTime(d.started_at)),
      h("dt", {}, "Finished"), h("dd", { id: "audit-finished" }, d.finished_at ? fmtTime(d.finished_at) : "In progress"),
      h("dt", {}, "Form version"), h("dd", {}, String(d.form_version ?? "")),
      h("dt", {}, "Status"), h("dd", { class: "badges" }, ctx.recordBadges(local, rec)),
      d.notes ? [h("dt", {}, "Notes"), h("dd", {}, d.notes)] : null),
    h("h2", { id: "items-h" }, `Items (${items.length})`),
    items.length ? h("ul", { class: "records", id: "audit-items", "aria-labelledby": "items-h" },
      items.map((item) => ctx.recordButton(local, item,
        item.local.notes ? h("span", { class: "hint" }, item.local.notes) : null)))
      : h("p", { class: "empty" }, "No items yet."),
    h("div", { class: "actions" },
      editable ? h("a", { class: "btn primary big", href: `#item/${id}/new`, id: "add-item" }, "Add item") : null,
      editable && !d.finished_at ? finish : null,
      editable ? h("a", { class: "btn secondary", href: `#audit/${id}/edit` }, "Edit audit details") : null,
      h("a", { class: "btn secondary", href: "#home" }, "Home")));
  return null;
}

// --- audit item -------------------------------------------------------------------------------

export function showItem(ctx, auditId, itemId) {
  const { local } = ctx;
  const audit = local.get("street_audit", auditId);
  const isNew = !itemId || itemId === "new";
  const rec = isNew ? null : local.get("audit_item", itemId);
  if (!audit && (isNew || !rec)) return notFound(ctx);
  if (!isNew && !rec) return notFound(ctx);
  const editable = isNew ? local.canEdit(audit) : local.canEdit(rec);
  const d = rec ? rec.local : {};
  const version = d.form_version ?? (audit ? audit.local.form_version : null);
  const form_ = formFor(local, "audit_item", version);
  const issueCodes = enumOf(form_.schema, "issue_type") || Object.keys(config.labels.issue_type);
  const graded = new Set((form_.code_lists && form_.code_lists.graded_issue_type) || config.gradedDefault);

  const issue = select("issue_type", [["", "Choose the issue…"], ...options("issue_type", issueCodes)],
    d.issue_type || "", { id: "item-issue" });
  const grade = choiceGroup("Grade", "grade", options("grade", ["A", "B", "C", "D"]), { value: d.grade, required: true });
  const gradeWrap = h("div", { id: "grade-wrap" }, grade);
  const agency = h("input", { id: "item-agency", maxlength: 120, value: d.responsible_agency || "" });
  const notes = textarea("item-notes", d.notes);
  const photos = new PhotoField({ existing: d.photos || [], local, maxBytes: maxPhotoBytes(local), disabled: !editable });
  const loc = new LocationField({ areas: areas(local), places: places(local), existing: rec ? d : null });
  ctx.onLeave(() => { photos.destroy(); loc.destroy(); });
  const showGrade = () => { gradeWrap.hidden = !graded.has(issue.value); };
  issue.addEventListener("change", showGrade);
  showGrade();

  const save = h("button", { type: "submit", class: "btn primary", id: "save-item" }, isNew ? "Save item" : "Save changes");
  const form = h("form", { class: "stack", novalidate: true, id: "item-form", "data-draft": editable },
    banners(ctx, rec),
    h("fieldset", { class: "bare", disabled: !editable },
      h("legend", { class: "visually-hidden" }, "Audit item"),
      field("Issue type", issue, { required: true }),
      gradeWrap,
      field("Responsible agency", agency),
      field("Note", notes)),
    photos.element,
    editable ? loc.element : null,
    h("div", { class: "row" }, editable ? save : null,
      h("a", { class: "btn secondary", href: `#audit/${auditId}` }, "Back to the audit")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let ok = true;
    setError(issue, issue.value ? "" : "Choose the issue type.");
    ok = ok && !!issue.value;
    const needsGrade = graded.has(issue.value);
    const g = needsGrade ? checkedValues(grade)[0] : null;
    groupError(grade, needsGrade && !g ? "This issue is graded: choose A to D." : "");
    ok = ok && (!needsGrade || !!g);
    const where = locationOk(loc);
    ok = ok && !!where;
    if (!ok) {
      focusFirstError(form);
      if (!where) loc.focus();
      return;
    }
    const data = { street_audit: auditId, issue_type: issue.value, grade: g || null,
      responsible_agency: agency.value.trim(), notes: notes.value.trim(), ...where, photos: photos.value() };
    if (isNew) {
      if (!Number.isInteger(version)) {
        ctx.toast("The audit form has not been received yet: sync once with a connection.");
        return;
      }
      data.form_version = version;
    }
    save.disabled = true;
    const savedId = isNew ? crypto.randomUUID() : itemId;
    await local.save("audit_item", savedId, data, photos.newPhotos());
    ctx.saved("audit_item", savedId);
    ctx.go(`#audit/${auditId}`);
  });
  ctx.render("item", isNew ? "New audit item" : describe("audit_item", d), form);
  return null;
}
