// Sync: manifest, push the outbox, upload photos, pull changes, read the device's status.
// Every push result is written to the sync log (nothing disappears silently); a revoked
// device wipes itself; a 410 resync drops the cursor and the server copies and pulls again.

import { ApiError } from "./api.js";
import { describe } from "./config.js";
import { key } from "./local.js";

const PULL_PAGE = 200;
const KEPT_UPLOADED_PHOTOS = 50;
const encoder = new TextEncoder();

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function now() {
  return new Date().toISOString();
}

export class Syncer {
  constructor({ api, onWipe, onAuthLost, onProgress }) {
    this.api = api;
    this.onWipe = onWipe;
    this.onAuthLost = onAuthLost;
    this.onProgress = onProgress || (() => {});
    this.running = null;
  }

  // One sync at a time; a second request joins the running one.
  run(local, reason = "manual") {
    if (!this.running) {
      this.running = this._run(local, reason).finally(() => { this.running = null; });
    }
    return this.running;
  }

  async _run(local, reason) {
    const summary = { reason, statuses: {}, photos: 0, pulled: { upsert: 0, delete: 0, evict: 0 } };
    this.api.token = local.state.session && local.state.session.token;
    try {
      this.onProgress("Checking forms…");
      await this.manifest(local);
      this.onProgress("Sending changes…");
      await this.push(local, summary);
      this.onProgress("Uploading photos…");
      await this.photos(local, summary);
      this.onProgress("Receiving changes…");
      await this.pull(local, summary);
      await this.status(local);
      local.state.sync = { ...local.state.sync, lastOk: Date.now(), lastAttempt: Date.now(), lastError: null,
        authLost: null };
      await local.saveState("sync");
      return { ok: true, summary };
    } catch (error) {
      if (error instanceof ApiError && error.wipe) {
        await this.onWipe(error);
        return { ok: false, wiped: true, error };
      }
      const lastError = { code: error.code || "error", message: error.message, status: error.status || null };
      local.state.sync = { ...local.state.sync, lastAttempt: Date.now(), lastError };
      const ops = local.stateOps("sync");
      if (error instanceof ApiError) {
        ops.push(...local.logOps([{ at: now(), status: "error", code: error.code, message: error.message }]));
      }
      if (error instanceof ApiError && error.status === 401) {
        local.state.sync.authLost = error.code;
      }
      try {
        await local.vault.write(ops);
      } catch {
        // locked meanwhile: the error is shown, not stored
      }
      if (error instanceof ApiError && error.status === 401) this.onAuthLost(error);
      return { ok: false, error, summary };
    }
  }

  async manifest(local) {
    const { data } = await this.api.manifest();
    local.state.manifest = data;
    const forms = local.state.forms || {};
    for (const [type, spec] of Object.entries(data.record_types || {})) {
      if (spec.form_version === null || spec.form_version === undefined) continue;
      forms[type] = forms[type] || {};
      forms[type][spec.form_version] = { schema: spec.schema, code_lists: spec.code_lists || null };
    }
    local.state.forms = forms;
    if (local.state.session) {
      local.state.session = { ...local.state.session, areas: data.areas || local.state.session.areas,
        user: data.user || local.state.session.user };
    }
    await local.saveState("manifest", "forms", "session");
  }

  // --- push -----------------------------------------------------------------------------

  nextBatch(local) {
    const limits = (local.state.manifest && local.state.manifest.limits) || {};
    const maxMutations = limits.max_mutations || 100;
    const maxBytes = Math.floor((limits.max_body_bytes || 1048576) * 0.9);
    const batch = [];
    let bytes = 16;
    for (const entry of local.outbox) {
      const size = encoder.encode(JSON.stringify(entry.m)).length + 1;
      if (batch.length >= maxMutations || (batch.length && bytes + size > maxBytes)) break;
      batch.push(entry);
      bytes += size;
    }
    return batch;
  }

  async push(local, summary) {
    for (let round = 0; round < 10000; round += 1) {
      const batch = this.nextBatch(local);
      if (!batch.length) return;
      for (const entry of batch) entry.sent = true;
      await local.vault.write(batch.map((entry) => local.outboxOp(entry)));
      let response;
      for (let attempt = 0; ; attempt += 1) {
        try {
          response = await this.api.push(batch.map((entry) => entry.m));
          break;
        } catch (error) {
          if (error instanceof ApiError && error.status === 503 && attempt < 3) {
            await sleep(1000 * (attempt + 1)); // busy: the same push again
            continue;
          }
          throw error;
        }
      }
      const before = local.outbox.length;
      await this.applyResults(local, batch, (response.data && response.data.results) || [], summary);
      if (local.outbox.length === before) return; // no answer we understood: keep them for later
    }
  }

  async applyResults(local, batch, results, summary) {
    const byId = new Map(results.map((r) => [r.mutation_id, r]));
    const ops = [];
    const logs = [];
    const touched = new Map();
    for (const entry of batch) {
      const m = entry.m;
      const answer = byId.get(m.mutation_id);
      if (!answer) continue;
      const resent = answer.status === "duplicate";
      const outcome = resent && answer.original ? { ...answer.original, version: answer.version ?? answer.original.version }
        : answer;
      const status = outcome.status;
      if (!["applied", "merged", "conflict", "rejected"].includes(status)) continue;
      local.outbox = local.outbox.filter((e) => e !== entry);
      ops.push(local.outboxDelOp(entry));
      const k = key(m.type, m.id);
      const rec = local.records.get(k);
      logs.push({
        at: now(), mutation_id: m.mutation_id, type: m.type, id: m.id, op: m.op, status, resent,
        version: outcome.version ?? null, code: outcome.code || null, message: outcome.message || null,
        errors: outcome.errors || null, conflict_id: outcome.conflict_id || null, reason: outcome.reason || null,
        label: describe(m.type, rec ? rec.local : m.data),
      });
      summary.statuses[status] = (summary.statuses[status] || 0) + 1;
      if (!rec) continue;
      if (status === "applied" || status === "merged") {
        if (m.op === "delete") {
          local.records.delete(k);
          touched.delete(k);
          ops.push(local.recordDelOp(m.type, m.id));
          continue;
        }
        const base = rec.server || { type: m.type, id: m.id, version: 0, data: {}, author: local.username,
          review: { state: "submitted", note: "", reviewed_at: null } };
        rec.server = { ...base, version: Math.max(base.version || 0, outcome.version || 0),
          data: { ...(base.data || {}), ...(m.data || {}) } };
        rec.issue = null;
      } else if (status === "conflict") {
        if (outcome.record) {
          const { op, ...server } = outcome.record; // eslint-disable-line no-unused-vars
          rec.server = { ...(rec.server || {}), ...server };
        }
        rec.conflict = { conflict_id: outcome.conflict_id || null, at: now(), fields: Object.keys(m.data || {}),
          reason: outcome.reason || null };
      } else {
        rec.issue = { code: outcome.code || "rejected", message: outcome.message || "", errors: outcome.errors || {},
          op: m.op, at: now() };
      }
      local.recompute(rec);
      touched.set(k, rec);
    }
    for (const rec of touched.values()) ops.push(local.recordOp(rec));
    ops.push(...local.logOps(logs), local.pendingOp());
    await local.vault.write(ops);
  }

  // --- photos ---------------------------------------------------------------------------

  async photos(local, summary) {
    for (const photo of [...local.waitingPhotos()]) {
      const head = await this.api.hasAttachment(photo.sha256);
      let outcome;
      if (head.status === 200) {
        outcome = "already on the server";
      } else if (head.status === 404) {
        const found = await local.photoBytes(photo.sha256);
        if (!found) {
          photo.state = "lost";
          await local.vault.write([...local.stateOps("photos"), local.pendingOp(), ...local.logOps([
            { at: now(), status: "rejected", code: "photo_missing", label: `Photo ${photo.sha256.slice(0, 10)}…`,
              message: "The photo's bytes are no longer on this handheld." }])]);
          continue;
        }
        try {
          const response = await this.api.putAttachment(photo.sha256, found.bytes, found.type);
          outcome = response.status === 201 ? "uploaded" : "already on the server";
        } catch (error) {
          if (error instanceof ApiError && [400, 413, 415].includes(error.status)) {
            photo.state = "refused";
            photo.error = { code: error.code, message: error.message };
            await local.vault.write([{ store: "photos", name: photo.sha256, del: true },
              ...local.stateOps("photos"), local.pendingOp(), ...local.logOps([
                { at: now(), status: "rejected", code: error.code, message: error.message,
                  label: `Photo ${photo.sha256.slice(0, 10)}…` }])]);
            continue;
          }
          throw error;
        }
      } else {
        throw new ApiError(head.status, { code: `http_${head.status}`, message: "The photo check failed." });
      }
      photo.state = "uploaded";
      photo.uploadedAt = now();
      summary.photos += 1;
      const uploaded = local.state.photos.filter((p) => p.state !== "waiting");
      const drop = new Set(uploaded.slice(0, Math.max(0, uploaded.length - KEPT_UPLOADED_PHOTOS)));
      local.state.photos = local.state.photos.filter((p) => !drop.has(p));
      await local.vault.write([{ store: "photos", name: photo.sha256, del: true },
        ...local.stateOps("photos"), local.pendingOp(), ...local.logOps([
          { at: now(), status: "uploaded", label: `Photo ${photo.sha256.slice(0, 10)}…`, message: outcome }])]);
    }
  }

  // --- pull -----------------------------------------------------------------------------

  async pull(local, summary) {
    let resynced = false;
    const removed = [];
    for (let page = 0; page < 100000; page += 1) {
      let response;
      try {
        response = await this.api.pull(local.state.cursor, PULL_PAGE);
      } catch (error) {
        if (error instanceof ApiError && error.status === 410 && !resynced) {
          resynced = true;
          await this.resync(local);
          continue;
        }
        throw error;
      }
      const ops = [];
      for (const change of response.data.changes || []) this.applyChange(local, change, ops, summary, removed);
      local.state.cursor = response.data.cursor;
      ops.push(...local.stateOps("cursor"));
      await local.vault.write(ops);
      if (!response.data.has_more) break;
    }
    if (removed.length) await local.vault.write(local.logOps(removed));
  }

  applyChange(local, change, ops, summary, removed) {
    const k = key(change.type, change.id);
    if (change.op === "upsert") {
      const known = local.records.get(k);
      const rec = known || { type: change.type, id: change.id, server: null, local: {},
        createdAt: change.server_time };
      // The echo of what this handheld just sent is not news: count only versions it had not seen.
      if (!(known && known.server && known.server.version === change.version)) summary.pulled.upsert += 1;
      const { op, ...server } = change; // eslint-disable-line no-unused-vars
      rec.server = server;
      local.recompute(rec);
      local.records.set(k, rec);
      ops.push(local.recordOp(rec));
      return;
    }
    const rec = local.records.get(k);
    if (!rec) return;
    local.records.delete(k);
    ops.push(local.recordDelOp(change.type, change.id));
    summary.pulled[change.op] = (summary.pulled[change.op] || 0) + 1;
    removed.push({
      at: now(), type: change.type, id: change.id, op: change.op, label: describe(change.type, rec.local),
      status: change.op === "delete" ? "deleted" : "evicted",
      message: change.op === "delete" ? "Deleted on the server: removed from this handheld."
        : "No longer yours to hold (area or access changed): removed from this handheld.",
    });
  }

  // 410 resync_required: forget the cursor and the server copies, keep the outbox (and the
  // records it changes), then pull everything again.
  async resync(local) {
    local.state.cursor = null;
    const ops = [];
    for (const [k, rec] of [...local.records]) {
      if (!rec.server || local.pendingFor(rec.type, rec.id).length) continue;
      local.records.delete(k);
      ops.push(local.recordDelOp(rec.type, rec.id));
    }
    ops.push(...local.stateOps("cursor"), ...local.logOps([{ at: now(), status: "resync",
      message: "The server asked for a full resync: local copies were dropped and pulled again; "
        + "changes waiting to be sent were kept." }]));
    await local.vault.write(ops);
  }

  async status(local) {
    const { data } = await this.api.status();
    local.state.status = {
      conflicts: data.conflicts || [], quarantined: data.quarantined || [],
      missing_attachments: data.missing_attachments || [], last_push_at: data.last_push_at || null,
      last_pull_at: data.last_pull_at || null, at: now(),
    };
    // A record is "in conflict" while the server lists an open conflict for it.
    const open = new Map(local.state.status.conflicts.map((c) => [key(c.type, c.id), c]));
    const ops = local.stateOps("status");
    for (const rec of local.records.values()) {
      const conflict = open.get(key(rec.type, rec.id));
      if (conflict && (!rec.conflict || rec.conflict.reason !== conflict.reason)) {
        rec.conflict = { conflict_id: conflict.conflict_id, at: conflict.created_at, fields: conflict.fields,
          reason: conflict.reason || null };
        ops.push(local.recordOp(rec));
      } else if (!conflict && rec.conflict) {
        rec.conflict = null;
        ops.push(local.recordOp(rec));
      }
    }
    await local.vault.write(ops);
  }
}
