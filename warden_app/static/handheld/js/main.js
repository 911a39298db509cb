// The warden's handheld app: screens, lock, idle timer and the sync triggers.

import { Api, ApiError, NetworkError } from "./api.js";
import { config, describe } from "./config.js";
import { button, fmtTime, h } from "./dom.js";
import { showAudit, showAuditDetails, showItem, showObservation } from "./forms.js";
import { Local } from "./local.js";
import { Syncer } from "./sync.js";
import { cached as tilesCached, describeTiles, onTilesChange, plan as tilesPlan, refreshTiles } from "./tiles.js";
import {
  MAX_PIN_FAILURES, WrongPin, createVault, metaGet, unlockVault, vaultExists, wipeEverything,
} from "./vault.js";

const MIN_PIN = 6;
const DAY_MS = 86400000;
const PERIODIC_SYNC_MS = 5 * 60 * 1000;

const app = {
  api: new Api(config.api),
  local: null,
  cleanup: [], // what the screen on show needs done when it goes
  nextCleanup: [], // registered by the screen being built, before it is rendered
  lastActivity: Date.now(),
  syncMessage: "",
  syncing: false,
  screen: null,
};

const root = document.getElementById("app");
// One window holds the key at a time: unlocking here locks the app in any other window.
const channel = "BroadcastChannel" in window ? new BroadcastChannel("fieldsync-warden") : null;
if (channel) {
  channel.onmessage = (event) => {
    const type = event.data && event.data.type;
    if (type === "unlocked" && app.local) lock("The app was opened in another window.");
    else if (type === "wiped" && app.local) {
      const local = app.local;
      app.local = null;
      forget(local);
      showLogin("Local data was deleted in another window.");
    }
  };
}
const nav = document.getElementById("topnav");
const netState = document.getElementById("net-state");
const toastEl = document.getElementById("toast");

app.syncer = new Syncer({
  api: app.api,
  onWipe: () => wipe("This handheld was revoked. All local data has been deleted. Sign in to enrol it again."),
  onAuthLost: () => { if (app.local) route(); },
  onProgress: (text) => setSyncMessage(text),
});

// --- screen plumbing -------------------------------------------------------------------------

function cleanupScreen() {
  for (const fn of app.cleanup.splice(0)) {
    try {
      fn();
    } catch {
      // nothing to do
    }
  }
}

export function render(name, title, ...children) {
  cleanupScreen();
  app.cleanup = app.nextCleanup;
  app.nextCleanup = [];
  app.screen = name;
  document.body.dataset.screen = name;
  const heading = h("h1", { tabindex: "-1", id: "screen-title" }, title);
  root.replaceChildren(heading, ...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  document.title = `${title} · fieldsync`;
  nav.hidden = !app.local;
  updateNet();
  heading.focus({ preventScroll: false });
  window.scrollTo(0, 0);
}

export function onLeave(fn) {
  app.nextCleanup.push(fn);
}

export function toast(text) {
  toastEl.textContent = text;
  toastEl.classList.add("on");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => toastEl.classList.remove("on"), 5000);
}

export function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

export function currentLocal() {
  return app.local;
}

function updateNet() {
  const waiting = app.local ? app.local.outbox.length + app.local.waitingPhotos().length : null;
  netState.textContent = `${navigator.onLine ? "Online" : "Offline"}${waiting ? ` · ${waiting} waiting` : ""}`;
  netState.classList.toggle("offline", !navigator.onLine);
}

function badge(text, kind) {
  return h("span", { class: `badge ${kind || ""}` }, text);
}

export function recordBadges(local, rec) {
  const out = [];
  const pending = local.pendingFor(rec.type, rec.id).length;
  if (pending) out.push(badge("Waiting to send", "wait"));
  if (rec.issue) out.push(badge("Change rejected", "bad"));
  if (rec.conflict) out.push(badge("In conflict", "bad"));
  const state = local.reviewState(rec);
  if (state === "has_issues") out.push(badge("Has issues", "bad"));
  else if (state === "approved") out.push(badge("Approved", "ok"));
  else if (state === "rejected") out.push(badge("Rejected by supervisor", "bad"));
  else if (state === "edited") out.push(badge("Edited after review", ""));
  else if (rec.server && !pending) out.push(badge("Synced", "ok"));
  return out;
}

export function recordHref(rec) {
  if (rec.type === "observation") return `#obs/${rec.id}`;
  if (rec.type === "street_audit") return `#audit/${rec.id}`;
  return `#item/${rec.local.street_audit}/${rec.id}`;
}

export function recordButton(local, rec, extra) {
  const when = rec.local.observed_at || rec.local.started_at || rec.createdAt;
  return h("li", {},
    h("a", { class: "record", href: recordHref(rec) },
      h("span", { class: "record-title" }, describe(rec.type, rec.local)),
      h("span", { class: "record-meta" }, fmtTime(when)),
      h("span", { class: "badges" }, recordBadges(local, rec)),
      extra || null));
}

// --- login, lock, sign in again --------------------------------------------------------------

function pinInput(id, autocomplete = "off") {
  return h("input", { id, name: id, type: "password", inputmode: "numeric", autocomplete, minlength: MIN_PIN,
    required: true });
}

function formError(text) {
  return h("p", { class: "error banner", role: "alert", hidden: !text }, text || "");
}

function showLogin(notice) {
  app.local = null;
  const username = h("input", { id: "login-username", name: "username", autocomplete: "username", required: true,
    autocapitalize: "none", spellcheck: "false" });
  const password = h("input", { id: "login-password", name: "password", type: "password",
    autocomplete: "current-password", required: true });
  const label_ = h("input", { id: "login-label", name: "label", value: "Handheld", maxlength: 120 });
  const pin = pinInput("login-pin", "new-password");
  const pin2 = pinInput("login-pin2", "new-password");
  const error = formError("");
  const submit = h("button", { type: "submit", class: "btn primary" }, "Sign in");
  const form = h("form", { class: "stack", novalidate: true },
    notice ? h("p", { class: "notice", role: "status" }, notice) : null,
    h("p", {}, "Sign in once with a network connection. This enrols the handheld and sets the PIN that "
      + "encrypts everything kept on it."),
    h("div", { class: "field" }, h("label", { for: username.id }, "Username"), username),
    h("div", { class: "field" }, h("label", { for: password.id }, "Password"), password),
    h("div", { class: "field" }, h("label", { for: label_.id }, "Name of this handheld"), label_),
    h("div", { class: "field" }, h("label", { for: pin.id }, `Choose a PIN (at least ${MIN_PIN} digits)`), pin),
    h("div", { class: "field" }, h("label", { for: pin2.id }, "PIN again"), pin2),
    error, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    const problem = !username.value.trim() || !password.value ? "Enter your username and password."
      : pin.value.length < MIN_PIN ? `The PIN needs at least ${MIN_PIN} characters.`
        : pin.value !== pin2.value ? "The two PINs are not the same." : "";
    if (problem) {
      error.textContent = problem;
      error.hidden = false;
      return;
    }
    submit.disabled = true;
    submit.textContent = "Signing in…";
    try {
      const { data } = await app.api.enrol({ username: username.value.trim(), password: password.value,
        label: label_.value.trim() || "Handheld", platform: navigator.userAgent.slice(0, 120) });
      password.value = "";
      const vault = await createVault(pin.value);
      const local = new Local(vault);
      local.state.session = { token: data.token, device_id: data.device_id, user: data.user, areas: data.areas,
        label: label_.value.trim() || "Handheld", enrolledAt: new Date().toISOString() };
      local.state.sync = { lastOk: Date.now(), signedInAt: Date.now() };
      local.state.prefs = { lockMinutes: config.idleLockMinutes };
      await local.saveState("session", "sync", "prefs");
      app.local = local;
      app.lastActivity = Date.now();
      if (channel) channel.postMessage({ type: "unlocked" });
      askPrecache();
      // Unsynced records must not be evicted when the phone runs short of space.
      if (navigator.storage && navigator.storage.persist) navigator.storage.persist().catch(() => {});
      go("#home");
      runSync("login");
    } catch (err) {
      error.textContent = loginMessage(err);
      error.hidden = false;
      submit.disabled = false;
      submit.textContent = "Sign in";
    }
  });
  render("login", "Sign in", form);
}

function loginMessage(err) {
  if (err instanceof NetworkError) return "No connection: signing in needs the network.";
  if (err instanceof ApiError) {
    if (err.code === "invalid_credentials") return "Unknown user or wrong password.";
    if (err.code === "enrol_forbidden") return "This account may not use a handheld.";
    if (err.code === "throttled") return "Too many attempts: wait a minute and try again.";
    return err.message;
  }
  return `Something went wrong: ${err.message}`;
}

async function showLock(reason) {
  app.local = null;
  const pending = (await metaGet("pending").catch(() => 0)) || 0;
  const pin = pinInput("unlock-pin", "current-password");
  const error = formError("");
  const submit = h("button", { type: "submit", class: "btn primary" }, "Unlock");
  const form = h("form", { class: "stack", novalidate: true },
    reason ? h("p", { class: "notice", role: "status" }, reason) : null,
    h("p", {}, "Records on this handheld are encrypted. Enter your PIN to open them."),
    pending ? h("p", { class: "hint" }, `${pending} change${pending === 1 ? "" : "s"} waiting to be sent.`) : null,
    h("div", { class: "field" }, h("label", { for: pin.id }, "PIN"), pin),
    error, submit,
    h("details", { class: "forgot" }, h("summary", {}, "Forgotten your PIN?"),
      h("p", {}, "Without the PIN nothing stored here can be read. You can delete it and sign in again; "
        + "changes not yet sent will be lost."),
      button("Delete local data and sign in again", async () => {
        if (window.confirm("Delete everything on this handheld, including changes not yet sent?")) {
          await wipe("Local data deleted. Sign in again.");
        }
      }, { class: "btn danger" })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    submit.disabled = true;
    submit.textContent = "Unlocking…";
    try {
      const vault = await unlockVault(pin.value);
      pin.value = "";
      const local = new Local(vault);
      await local.load();
      app.local = local;
      app.lastActivity = Date.now();
      if (channel) channel.postMessage({ type: "unlocked" });
      route();
      restoreDraft(local);
      if (navigator.onLine && !isStale(local)) runSync("unlock");
    } catch (err) {
      pin.value = "";
      submit.disabled = false;
      submit.textContent = "Unlock";
      if (err instanceof WrongPin) {
        if (err.failures >= MAX_PIN_FAILURES) {
          await wipe(`The PIN was wrong ${err.failures} times: all local data has been deleted.`);
          return;
        }
        error.textContent = `Wrong PIN (${err.failures} of ${MAX_PIN_FAILURES} attempts before the data is deleted).`;
      } else {
        error.textContent = `Could not unlock: ${err.message}`;
      }
      error.hidden = false;
      pin.focus();
    }
  });
  render("locked", "Locked", form);
  pin.focus();
}

function isStale(local) {
  const last = (local.state.sync && local.state.sync.lastOk) || 0;
  return Date.now() - last > config.maxDaysWithoutSync * DAY_MS;
}

// After too long without a sync (or when the server no longer knows the token), records stay
// closed until the user signs in online again: a new enrolment that proves the password.
function showSignInAgain() {
  const local = app.local;
  const session = local.state.session || {};
  const stale = isStale(local);
  const password = h("input", { id: "again-password", type: "password", autocomplete: "current-password",
    required: true });
  const error = formError("");
  const submit = h("button", { type: "submit", class: "btn primary" }, "Sign in online");
  const last = local.state.sync && local.state.sync.lastOk;
  const form = h("form", { class: "stack", novalidate: true },
    h("p", { class: "notice", role: "status" }, stale
      ? `This handheld has not synced since ${fmtTime(last) || "it was set up"} (the limit is `
        + `${config.maxDaysWithoutSync} days). Records stay closed until you sign in online again.`
      : "The server no longer accepts this handheld's sign-in. Sign in online again to carry on."),
    h("p", {}, `Signed in as ${session.user ? session.user.username : "?"}. `
      + `${local.outbox.length} change(s) are waiting and will be sent after signing in.`),
    h("div", { class: "field" }, h("label", { for: password.id }, "Password"), password),
    error, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    error.hidden = true;
    try {
      const { data } = await app.api.enrol({ username: session.user.username, password: password.value,
        label: session.label || "Handheld", platform: navigator.userAgent.slice(0, 120) });
      password.value = "";
      local.state.session = { ...session, token: data.token, device_id: data.device_id, user: data.user,
        areas: data.areas, previousDevices: [...(session.previousDevices || []), session.device_id] };
      local.state.sync = { ...local.state.sync, lastOk: Date.now(), authLost: null, signedInAt: Date.now() };
      await local.saveState("session", "sync");
      go("#home");
      runSync("signin");
    } catch (err) {
      error.textContent = loginMessage(err);
      error.hidden = false;
      submit.disabled = false;
    }
  });
  render("signin-again", "Sign in again", form,
    button("Lock", () => lock(), { class: "btn secondary" }));
}

// --- lock and wipe ---------------------------------------------------------------------------

export async function lock(reason) {
  const local = app.local;
  if (!local) return;
  const draft = captureDraft();
  app.local = null;
  root.replaceChildren(); // nothing of the record stays on screen, not even for a moment
  cleanupScreen();
  if (draft) {
    local.state.draft = draft;
    await local.saveState("draft").catch(() => {});
  }
  await showLock(reason);
  if (app.syncer.running) await app.syncer.running.catch(() => {});
  forget(local);
}

// Drop the key and everything decrypted (the running sync, if any, has finished with them).
function forget(local) {
  local.vault.close();
  local.records.clear();
  local.outbox = [];
  local.state = {};
  app.api.token = null;
}

async function wipe(message) {
  const local = app.local;
  app.local = null;
  root.replaceChildren();
  cleanupScreen();
  if (local) forget(local);
  await wipeEverything();
  if (channel) channel.postMessage({ type: "wiped" });
  showLogin(message);
}

// --- what was being typed when the app locked: kept encrypted, restored after the PIN -----

function captureDraft() {
  const form = root.querySelector("form[data-draft]");
  if (!form) return null;
  const values = {};
  for (const el of form.querySelectorAll("input, select, textarea")) {
    if (el.type === "file" || el.type === "password" || el.disabled) continue;
    if (el.type === "checkbox" || el.type === "radio") values[`@${el.name}=${el.value}`] = el.checked;
    else if (el.id) values[el.id] = el.value;
  }
  return { hash: location.hash, values, at: Date.now() };
}

function restoreDraft(local) {
  const draft = local.state.draft;
  if (!draft) return;
  local.state.draft = null;
  local.saveState("draft").catch(() => {});
  const form = root.querySelector("form[data-draft]");
  if (!form || draft.hash !== location.hash || Date.now() - draft.at > DAY_MS) return;
  const addPerson = form.querySelector("#add-person");
  for (const id of Object.keys(draft.values)) {
    const m = /^person-(\d+)-/.exec(id);
    for (let i = 0; m && addPerson && i < 50 && !document.getElementById(`person-${m[1]}-description`); i += 1) {
      addPerson.click();
    }
  }
  for (const [name, value] of Object.entries(draft.values)) {
    let el;
    if (name.startsWith("@")) {
      const [field, v] = name.slice(1).split("=");
      el = [...form.querySelectorAll("input[type=checkbox], input[type=radio]")]
        .find((input) => input.name === field && input.value === v);
      if (el) el.checked = value;
    } else {
      el = document.getElementById(name);
      if (el) el.value = value;
    }
    if (el) el.dispatchEvent(new Event("change", { bubbles: true }));
  }
  toast("Restored what you were typing before the app locked. Add any new photos or hand-placed pin again.");
}

function askPrecache() {
  if (!("serviceWorker" in navigator)) return;
  navigator.serviceWorker.ready.then((registration) => {
    if (registration.active) registration.active.postMessage({ type: "precache" });
  }).catch(() => {});
}

function lockMs() {
  const chosen = app.local && app.local.state.prefs && app.local.state.prefs.lockMinutes;
  const minutes = Math.min(chosen || config.idleLockMinutes, config.idleLockMinutes);
  return minutes * 60000;
}

function checkIdle() {
  if (app.local && Date.now() - app.lastActivity > lockMs()) {
    lock("Locked after a period of inactivity.");
  }
}

// --- sync ------------------------------------------------------------------------------------

function setSyncMessage(text) {
  app.syncMessage = text;
  for (const el of document.querySelectorAll("[data-sync-message]")) el.textContent = text;
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

// "3 records sent, 1 needs your attention: someone changed it at the same time".
function summaryText(summary) {
  const st = summary.statuses;
  const sent = (st.applied || 0) + (st.merged || 0);
  const parts = [];
  if (sent) parts.push(`${plural(sent, "record", "records")} sent`);
  if (st.conflict) parts.push(`${st.conflict} need${st.conflict === 1 ? "s" : ""} your attention: someone changed `
    + `${st.conflict === 1 ? "it" : "them"} at the same time`);
  if (st.rejected) parts.push(`${st.rejected} not accepted: open ${st.rejected === 1 ? "it" : "them"} to correct`);
  if (summary.photos) parts.push(`${plural(summary.photos, "photo", "photos")} sent`);
  const p = summary.pulled;
  if (p.upsert) parts.push(`${plural(p.upsert, "update", "updates")} received`);
  if (p.delete) parts.push(`${plural(p.delete, "record", "records")} deleted on the server`);
  if (p.evict) parts.push(`${plural(p.evict, "record", "records")} no longer in your areas`);
  return `Synced ${fmtTime(Date.now())}${parts.length ? `: ${parts.join(", ")}` : ": nothing new"}.`;
}

function errorText(error) {
  if (error instanceof NetworkError) return "Not synced: no connection. Changes wait on the handheld.";
  if (error instanceof ApiError && error.status === 429) {
    return `Not synced: the server is busy${error.retryAfter ? ` (try again in ${error.retryAfter} s)` : ""}.`;
  }
  return `Not synced: ${error.message}`;
}

export async function runSync(reason = "manual") {
  const local = app.local;
  if (!local) return null;
  if (isStale(local) || (local.state.sync && local.state.sync.authLost)) {
    if (reason === "manual") toast("Sign in online first.");
    return null;
  }
  app.syncing = true;
  document.body.dataset.syncing = "true";
  setSyncMessage("Syncing…");
  const result = await app.syncer.run(local, reason);
  app.syncing = false;
  delete document.body.dataset.syncing;
  if (result.wiped || app.local !== local) return result;
  if (result.ok) keepOfflineMap(local);
  const text = result.ok ? summaryText(result.summary) : errorText(result.error);
  setSyncMessage(text);
  const outcome = app.lastSaved ? savedOutcome(local, app.lastSaved) : null;
  if (outcome && outcome !== SAVED_OFFLINE) app.lastSaved = null;
  if (outcome === SAVED_OFFLINE && result.ok && reason === "save" && !app.lastSaved.again) {
    app.lastSaved.again = true; // the sync that ran was one started before the save: once more
    syncSoon();
  } else if (outcome && (reason === "save" || outcome !== SAVED_OFFLINE)) toast(outcome);
  else if (reason === "manual" || reason === "online" || !result.ok) toast(text);
  document.body.dataset.lastSync = result.ok ? "ok" : "failed";
  if (["home", "sync", "records", "audit"].includes(app.screen)) route();
  else updateNet();
  return result;
}

// What a save says, from what the outbox really holds: still on the phone, or sent and
// then what became of it (the sync the save starts says which, when it ends).
export function saved(type, id) {
  app.lastSaved = { type, id };
  toast(navigator.onLine ? "Saved on this phone — sending now…" : SAVED_OFFLINE);
  syncSoon();
}

const SAVED_OFFLINE = "Saved on this phone — will send when online.";

function savedOutcome(local, { type, id }) {
  const rec = local.get(type, id);
  if (!rec) return null;
  if (local.pendingFor(type, id).length || !rec.server) return SAVED_OFFLINE;
  if (rec.issue) return "Sent, but not accepted: open the record to see what to correct.";
  if (rec.conflict) return "Sent, but someone changed it at the same time: your supervisor decides. Nothing to re-enter.";
  const state = local.reviewState(rec);
  const reviewed = (state === "submitted" || state === "edited")
    && !(type === "street_audit" && !rec.local.finished_at); // an audit goes to review when finished
  return reviewed ? "Sent, waiting for review." : "Saved and sent.";
}

let syncTimer = null;
export function syncSoon() {
  updateNet();
  if (!navigator.onLine) return;
  clearTimeout(syncTimer);
  syncTimer = setTimeout(() => runSync("save"), 1500);
}

// --- screens ---------------------------------------------------------------------------------

function syncBar(local) {
  const waiting = local.outbox.length;
  const photos = local.waitingPhotos().length;
  const last = local.state.sync && local.state.sync.lastOk;
  return h("section", { class: "syncbar", "aria-label": "Sync" },
    h("p", { id: "waiting-count" }, waiting || photos
      ? `${waiting} change${waiting === 1 ? "" : "s"} and ${photos} photo${photos === 1 ? "" : "s"} waiting to send.`
      : "Nothing waiting to send."),
    h("p", { class: "hint" }, `Last successful sync: ${fmtTime(last) || "never"}.`),
    h("p", { class: "hint", "data-sync-message": "", role: "status", "aria-live": "polite" }, app.syncMessage),
    button("Sync now", () => runSync("manual"), { class: "btn primary", id: "sync-now" }));
}

// --- the offline map (tiles.js, kept by the service worker) ---------------------------------

function keepOfflineMap(local, force = false) {
  const areas = (local.state.session && local.state.session.areas) || [];
  return refreshTiles(areas, { force }).catch(() => null);
}

// A paragraph saying what the offline map holds, kept up to date while the screen is shown.
function offlineMapSection(local) {
  const text = h("p", { id: "offline-map", role: "status", "aria-live": "polite" }, "Offline map: checking…");
  const areas = (local.state.session && local.state.session.areas) || [];
  const update = async () => {
    const meta = await tilesCached().catch(() => null);
    text.textContent = describeTiles(meta, tilesPlan(areas));
  };
  onLeave(onTilesChange((message) => {
    if (message.type === "tiles-progress") text.textContent = `Fetching the offline map: ${message.done} of ${message.total} tiles…`;
    else if (message.type === "tiles-failed") text.textContent = "The offline map could not be fetched: it is tried again at the next sync.";
    else update();
  }));
  update();
  const refresh = tilesPlan(areas) ? button("Refresh offline map", async () => {
    if (!navigator.onLine) {
      toast("Refreshing the offline map needs a connection.");
      return;
    }
    text.textContent = "Fetching the offline map…";
    await keepOfflineMap(local, true);
  }, { class: "btn secondary", id: "refresh-offline-map" }) : null;
  return h("section", { "aria-labelledby": "offline-map-h" },
    h("h2", { id: "offline-map-h" }, "Offline map"), text, refresh);
}

function showHome() {
  const local = app.local;
  const mine = local.list().filter((r) => local.isMine(r));
  const byRecent = (a, b) => (b.updatedAt || b.createdAt || "").localeCompare(a.updatedAt || a.createdAt || "");
  const returned = mine.filter((r) => local.reviewState(r) === "has_issues");
  const problems = mine.filter((r) => r.issue || r.conflict);
  const openAudits = mine.filter((r) => r.type === "street_audit" && !r.local.finished_at);
  const recent = mine.filter((r) => r.type !== "audit_item").sort(byRecent).slice(0, 10);
  const others = local.list().filter((r) => !local.isMine(r) && r.type !== "audit_item").length;
  const user = local.state.session.user || {};
  const areas = (local.state.session.areas || []).map((a) => a.name).join(", ");
  render("home", "Home",
    h("p", { class: "hint" }, `${user.username || ""}${user.organisation ? ` · ${user.organisation.name}` : ""}`
      + `${areas ? ` · ${areas}` : ""}`),
    h("div", { class: "actions" },
      h("a", { class: "btn primary big", href: "#obs/new", id: "new-observation" }, "New observation"),
      h("a", { class: "btn primary big", href: "#audit/new", id: "new-audit" }, "Start street audit")),
    syncBar(local),
    returned.length ? h("section", { "aria-labelledby": "returned-h" },
      h("h2", { id: "returned-h" }, "Returned to you"),
      h("ul", { class: "records", id: "returned-list" }, returned.map((r) => recordButton(local, r,
        h("span", { class: "review-note" }, `Supervisor: ${r.server.review.note || "(no note)"}`))))) : null,
    problems.length ? h("section", { "aria-labelledby": "problems-h" },
      h("h2", { id: "problems-h" }, "Needs attention"),
      h("ul", { class: "records" }, problems.map((r) => recordButton(local, r)))) : null,
    openAudits.length ? h("section", { "aria-labelledby": "audits-h" },
      h("h2", { id: "audits-h" }, "Audits in progress"),
      h("ul", { class: "records" }, openAudits.map((r) => recordButton(local, r)))) : null,
    h("section", { "aria-labelledby": "recent-h" },
      h("h2", { id: "recent-h" }, "My records"),
      recent.length ? h("ul", { class: "records", id: "my-records" }, recent.map((r) => recordButton(local, r)))
        : h("p", { class: "empty" }, "No records yet."),
      h("a", { class: "btn secondary", href: "#records" }, "All records")),
    h("p", { class: "hint" }, `${others} other record${others === 1 ? "" : "s"} from your areas on this handheld.`),
    h("a", { class: "btn secondary", href: "#settings" }, "Settings"));
}

function showRecords() {
  const local = app.local;
  const sorted = local.list().filter((r) => r.type !== "audit_item")
    .sort((a, b) => (b.updatedAt || b.createdAt || "").localeCompare(a.updatedAt || a.createdAt || ""));
  const mine = sorted.filter((r) => local.isMine(r));
  const others = sorted.filter((r) => !local.isMine(r));
  render("records", "Records",
    h("h2", {}, `Mine (${mine.length})`),
    mine.length ? h("ul", { class: "records" }, mine.map((r) => recordButton(local, r)))
      : h("p", { class: "empty" }, "None."),
    h("h2", {}, `Others in my areas (${others.length})`),
    others.length ? h("ul", { class: "records" }, others.map((r) => recordButton(local, r,
      h("span", { class: "hint" }, `by ${r.server.author}`)))) : h("p", { class: "empty" }, "None."));
}

// A field's name as the form labels it ("persons_involved" -> "Persons involved").
function fieldName(name) {
  const text = String(name).replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function errorsList(errors) {
  if (!errors || typeof errors !== "object") return null;
  const items = [];
  for (const [name, list] of Object.entries(errors)) {
    for (const e of Array.isArray(list) ? list : [list]) {
      items.push(h("li", {}, `${fieldName(name)}: ${e && e.message ? e.message : "not a value the server takes"}`));
    }
  }
  return items.length ? h("ul", { class: "field-errors" }, items) : null;
}

export { errorsList };

function statusKind(status) {
  return { applied: "ok", merged: "ok", uploaded: "ok", conflict: "bad", rejected: "bad", error: "bad",
    deleted: "", evicted: "", resync: "wait" }[status] || "";
}

// Each entry of the sync log in a warden's words: what happened, and what to do about it.
const LOG_BADGES = {
  applied: "Sent", merged: "Sent", conflict: "Needs your attention", rejected: "Not accepted",
  uploaded: "Photo sent", deleted: "Removed", evicted: "Removed", resync: "Downloaded again", error: "Sync stopped",
};
const REJECTED_WORDS = {
  permission_denied: "You may not change this record. Nothing to do: the server keeps its version.",
  review_locked: "Your supervisor has approved this record: it cannot be changed any more.",
  validation_failed: "Something in it is not valid. Open the record, correct what is listed and save again.",
  id_exists: "A record with the same identity is already on the server. Tell your supervisor.",
  photo_missing: "The photo is no longer on this phone: take it again if it is still needed.",
  area_forbidden: "It is outside your areas. Open it, move the pin to where you patrol, and save again.",
};

// With field errors the list says what is wrong, whatever the code (a create outside one's
// areas is permission_denied with `location: area_forbidden`).
export function rejectedWords(code, message, errors) {
  if (errors && Object.keys(errors).length) return "Not accepted. Open the record, correct what is listed and save again.";
  return REJECTED_WORDS[code] || `Not accepted${message ? `: ${message}` : ""}. Open the record, correct it and save again.`;
}

function logWords(entry) {
  switch (entry.status) {
    case "applied": return entry.op === "delete" ? "Deleted on the server. Nothing to do." : "Sent and accepted. Nothing to do.";
    case "merged": return "Sent: combined with a change someone else made at the same time. Nothing to do.";
    case "conflict": return `Someone changed it at the same time. ${entry.reason ? conflictWords(entry.reason) : ""}`
      + "Your version is kept for your supervisor to decide: you do not need to enter it again.";
    case "rejected": return rejectedWords(entry.code, entry.message, entry.errors);
    case "uploaded": return entry.message === "already on the server" ? "The server already had this photo."
      : "Photo sent.";
    case "error": return `The sync stopped${entry.message ? `: ${entry.message}` : ""}. It is tried again by itself; `
      + "your changes wait on this phone.";
    default: return entry.message || "";
  }
}

function conflictWords(reason) {
  return { location: "You both moved its location. ", review_locked: "Your supervisor approved it meanwhile. ",
    deleted: "It was deleted on the server meanwhile. " }[reason] || "";
}

const OP_WORDS = { create: "New record", update: "Change", delete: "Deletion" };

function showSync() {
  const local = app.local;
  const st = local.state.status;
  const outbox = local.outbox.map((e) => {
    const rec = local.get(e.m.type, e.m.id);
    return h("li", { dataset: { op: e.m.op, baseVersion: e.m.base_version ?? "" } },
      h("span", { class: "record-title" }, describe(e.m.type, rec ? rec.local : e.m.data)),
      h("span", { class: "record-meta" }, `${OP_WORDS[e.m.op] || e.m.op} · saved ${fmtTime(e.m.client_time)}`
        + `${e.sent ? " · sent, waiting for the server's answer" : ""}`));
  });
  const photos = local.waitingPhotos();
  const log = (local.state.log || []).map((entry) => h("li", { class: `log ${statusKind(entry.status)}`,
    dataset: { status: entry.status, resent: entry.resent ? "true" : "false" } },
    h("span", { class: "record-title" }, entry.label || (entry.type ? describe(entry.type, {}) : "Sync")),
    h("span", { class: "record-meta" }, [fmtTime(entry.at), entry.op ? OP_WORDS[entry.op] : null]
      .filter(Boolean).join(" · ")),
    h("span", { class: "badges" }, badge(`${LOG_BADGES[entry.status] || "Sync"}${entry.resent ? " (sent again)" : ""}`,
      statusKind(entry.status))),
    h("span", { class: "log-message" }, logWords(entry)),
    errorsList(entry.errors)));
  render("sync", "Sync",
    syncBar(local),
    h("section", { "aria-labelledby": "waiting-h" },
      h("h2", { id: "waiting-h" }, `Waiting to send (${outbox.length})`),
      outbox.length ? h("ul", { class: "records", id: "outbox-list" }, outbox) : h("p", { class: "empty" }, "Nothing."),
      photos.length ? h("p", {}, `${plural(photos.length, "photo", "photos")} waiting to upload.`) : null),
    st ? h("section", { "aria-labelledby": "server-h" },
      h("h2", { id: "server-h" }, "On the server"),
      h("ul", { class: "plain", id: "server-status" },
        st.conflicts.length ? h("li", {}, `${plural(st.conflicts.length, "record", "records")} changed by two `
          + "people at once, waiting for your supervisor") : null,
        st.quarantined.length ? h("li", {}, `${plural(st.quarantined.length, "change", "changes")} not accepted, `
          + "kept for your supervisor") : null,
        st.missing_attachments.length ? h("li", {}, `${plural(st.missing_attachments.length, "photo", "photos")} `
          + "the server is still waiting for") : null,
        st.conflicts.length || st.quarantined.length || st.missing_attachments.length ? null
          : h("li", {}, "Nothing of yours is waiting there."),
        h("li", { class: "hint" }, `Checked ${fmtTime(st.at)}`))) : null,
    offlineMapSection(local),
    h("section", { "aria-labelledby": "log-h" },
      h("h2", { id: "log-h" }, "Sync log"),
      log.length ? h("ol", { class: "records", id: "sync-log" }, log) : h("p", { class: "empty" }, "No syncs yet.")));
}

function showSettings() {
  const local = app.local;
  const session = local.state.session;
  const choices = [1, 2, 5, 10, 15, 30].filter((m) => m <= config.idleLockMinutes);
  if (!choices.includes(config.idleLockMinutes)) choices.push(config.idleLockMinutes);
  const current = Math.min((local.state.prefs && local.state.prefs.lockMinutes) || config.idleLockMinutes,
    config.idleLockMinutes);
  const sel = h("select", { id: "lock-minutes" }, choices.map((m) => h("option", { value: m, selected: m === current },
    `${m} minute${m === 1 ? "" : "s"}`)));
  sel.addEventListener("change", async () => {
    local.state.prefs = { ...(local.state.prefs || {}), lockMinutes: Number(sel.value) };
    await local.saveState("prefs");
    toast("Saved.");
  });
  render("settings", "Settings",
    h("div", { class: "field" }, h("label", { for: sel.id }, "Lock after this long without use"), sel),
    h("dl", { class: "facts" },
      h("dt", {}, "Signed in as"), h("dd", {}, session.user.username),
      h("dt", {}, "Handheld"), h("dd", {}, session.label || ""),
      h("dt", {}, "Areas"), h("dd", {}, (session.areas || []).map((a) => a.name).join(", ") || "none"),
      h("dt", {}, "Records open only if synced within"), h("dd", {}, `${config.maxDaysWithoutSync} days`)),
    offlineMapSection(local),
    button("Lock now", () => lock(), { class: "btn secondary" }),
    button("Sign out and delete local data", async () => {
      const waiting = local.outbox.length;
      if (window.confirm(waiting ? `${waiting} change(s) have not been sent and will be lost. Delete everything?`
        : "Delete everything on this handheld?")) await wipe("Signed out. Local data deleted.");
    }, { class: "btn danger" }));
}

export function route() {
  const local = app.local;
  if (!local) return;
  if (isStale(local) || (local.state.sync && local.state.sync.authLost)) {
    showSignInAgain();
    return;
  }
  const [name, a, b] = (location.hash || "#home").slice(1).split("/");
  const ctx = { local, render, go, toast, saved, onLeave, recordButton, recordBadges, errorsList, rejectedWords };
  switch (name) {
    case "obs": showObservation(ctx, a); break;
    case "audit":
      if (a === "new") showAuditDetails(ctx, null);
      else if (b === "edit") showAuditDetails(ctx, a);
      else showAudit(ctx, a);
      break;
    case "item": showItem(ctx, a, b); break;
    case "sync": showSync(); break;
    case "records": showRecords(); break;
    case "settings": showSettings(); break;
    default: showHome();
  }
}

// --- start -----------------------------------------------------------------------------------

function registerServiceWorker() {
  if (!("serviceWorker" in navigator)) return;
  navigator.serviceWorker.register(config.swUrl, { scope: config.scope }).catch((error) => {
    console.warn("service worker registration failed", error);
  });
  navigator.serviceWorker.ready.then(() => { document.documentElement.dataset.offlineReady = "true"; });
}

async function boot() {
  registerServiceWorker();
  for (const type of ["pointerdown", "keydown", "input", "touchstart", "wheel"]) {
    window.addEventListener(type, () => { app.lastActivity = Date.now(); }, { passive: true, capture: true });
  }
  setInterval(checkIdle, 5000);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) checkIdle(); });
  window.addEventListener("online", () => {
    updateNet();
    if (app.local) runSync("online");
  });
  window.addEventListener("offline", updateNet);
  window.addEventListener("hashchange", () => route());
  document.getElementById("lock-now").addEventListener("click", () => lock());
  for (const btn of document.querySelectorAll("[data-nav]")) btn.addEventListener("click", () => go(btn.dataset.nav));
  setInterval(() => { if (app.local && navigator.onLine) runSync("periodic"); }, PERIODIC_SYNC_MS);
  if (await vaultExists()) await showLock();
  else showLogin();
  document.body.dataset.ready = "true";
}

boot();
