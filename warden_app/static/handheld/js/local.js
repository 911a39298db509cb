// The unlocked working set: records, outbox, photos queue and sync state, decrypted in
// memory while the app is unlocked and written back through the vault on every change.
//
// A record: {type, id, server, local, issue, conflict, createdAt}
//   server  the last copy seen from the server (a pull change, or a push answer), or null
//   local   what the user sees: the server copy with the outbox's pending changes on top
//   issue   why the server last rejected a change to it ({code, message, errors})
// An outbox entry: {seq, m: mutation, sent}; `sent` once it has left in a push.

const MAX_LOG = 300;

export function key(type, id) {
  return `${type}:${id}`;
}

function clone(value) {
  return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
}

// JSON with object keys sorted (the server may hand back jsonb with its own key order).
function stable(value) {
  if (Array.isArray(value)) return `[${value.map(stable).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${stable(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value === undefined ? null : value);
}

export function same(a, b) {
  return stable(a) === stable(b);
}

export class Local {
  constructor(vault) {
    this.vault = vault;
    this.records = new Map();
    this.outbox = [];
    this.state = {
      session: null, manifest: null, forms: {}, cursor: null, log: [], sync: {}, prefs: {}, photos: [],
      status: null,
    };
  }

  async load() {
    for (const { obj } of await this.vault.all("records")) this.records.set(key(obj.type, obj.id), obj);
    this.outbox = (await this.vault.all("outbox")).map((x) => x.obj).sort((a, b) => a.seq - b.seq);
    for (const { obj } of await this.vault.all("state")) this.state[obj.k] = obj.v;
  }

  // --- persistence -------------------------------------------------------------------------

  stateOps(...names) {
    return names.map((k) => ({ store: "state", name: k, obj: { k, v: this.state[k] } }));
  }

  recordOp(rec) {
    return { store: "records", name: key(rec.type, rec.id), obj: rec };
  }

  recordDelOp(type, id) {
    return { store: "records", name: key(type, id), del: true };
  }

  outboxOp(entry) {
    return { store: "outbox", name: entry.m.mutation_id, obj: entry };
  }

  outboxDelOp(entry) {
    return { store: "outbox", name: entry.m.mutation_id, del: true };
  }

  pendingOp() {
    return { meta: { pending: this.outbox.length + this.waitingPhotos().length } };
  }

  async saveState(...names) {
    await this.vault.write(this.stateOps(...names));
  }

  // --- queries ----------------------------------------------------------------------------

  get username() {
    return this.state.session && this.state.session.user && this.state.session.user.username;
  }

  get(type, id) {
    return this.records.get(key(type, id)) || null;
  }

  pendingFor(type, id) {
    return this.outbox.filter((e) => e.m.type === type && e.m.id === id);
  }

  hasPendingCreate(type, id) {
    return this.pendingFor(type, id).some((e) => e.m.op === "create");
  }

  isMine(rec) {
    return !rec.server || rec.server.author === this.username;
  }

  reviewState(rec) {
    return rec.server && rec.server.review ? rec.server.review.state : null;
  }

  // Items are locked with their audit; other records by their own review state.
  isLocked(rec) {
    if (rec.type === "audit_item") {
      const audit = this.get("street_audit", rec.local.street_audit);
      return !!audit && this.reviewState(audit) === "approved";
    }
    return this.reviewState(rec) === "approved";
  }

  canEdit(rec) {
    return this.isMine(rec) && !this.isLocked(rec);
  }

  list(type) {
    return [...this.records.values()].filter((r) => !type || r.type === type);
  }

  itemsOf(auditId) {
    return this.list("audit_item").filter((r) => r.local.street_audit === auditId)
      .sort((a, b) => (a.createdAt || "").localeCompare(b.createdAt || ""));
  }

  waitingPhotos() {
    return this.state.photos.filter((p) => p.state === "waiting");
  }

  // The user's view of a record: the server copy with every pending change on top.
  recompute(rec) {
    const pending = this.pendingFor(rec.type, rec.id);
    if (!rec.server && !pending.some((e) => e.m.op === "create")) return rec; // local only: keep as typed
    const data = rec.server ? clone(rec.server.data || {}) : {};
    for (const e of pending) if (e.m.data) Object.assign(data, clone(e.m.data));
    rec.local = data;
    return rec;
  }

  nextSeq() {
    return this.outbox.reduce((max, e) => Math.max(max, e.seq), 0) + 1;
  }

  // --- changes made on the handheld --------------------------------------------------------

  // Save what a form produced. A record never sent (or whose create was rejected) becomes a
  // create; otherwise an update carrying only the changed fields, based on the version last
  // seen from the server (so several offline edits all carry that same base).
  async save(type, id, data, photos = []) {
    let rec = this.get(type, id);
    const now = new Date().toISOString();
    let mutation;
    if (!rec || (!rec.server && !this.hasPendingCreate(type, id))) {
      const full = { ...(rec ? rec.local : {}), ...clone(data) }; // a rejected create is sent again whole
      mutation = { mutation_id: crypto.randomUUID(), type, op: "create", id, base_version: null, client_time: now,
        data: clone(full) };
      rec = rec || { type, id, server: null, local: {}, createdAt: now };
      rec.local = full;
      rec.issue = null;
    } else {
      const patch = {};
      for (const [name, value] of Object.entries(data)) {
        if (!same(value, rec.local[name])) patch[name] = clone(value);
      }
      if (!Object.keys(patch).length) return null;
      mutation = { mutation_id: crypto.randomUUID(), type, op: "update", id,
        base_version: rec.server ? rec.server.version : 1, client_time: now, data: patch };
      Object.assign(rec.local, clone(patch));
      rec.issue = null;
    }
    rec.updatedAt = now;
    const entry = { seq: this.nextSeq(), m: mutation, sent: false };
    this.outbox.push(entry);
    this.records.set(key(type, id), rec);
    const ops = [this.recordOp(rec), this.outboxOp(entry)];
    for (const photo of photos) {
      if (!this.state.photos.some((p) => p.sha256 === photo.sha256)) {
        this.state.photos.push({ sha256: photo.sha256, type: photo.type, size: photo.bytes.byteLength,
          state: "waiting", at: now, record: key(type, id) });
        ops.push({ store: "photos", name: photo.sha256, obj: { sha256: photo.sha256, type: photo.type },
          bytes: photo.bytes });
      }
    }
    ops.push(...this.stateOps("photos"), this.pendingOp());
    await this.vault.write(ops);
    return mutation;
  }

  async photoBytes(sha256) {
    const found = await this.vault.get("photos", sha256);
    return found ? { bytes: found.bytes, type: found.obj.type } : null;
  }

  // --- the sync log: every push result stays visible --------------------------------------

  logOps(entries) {
    this.state.log = [...entries.reverse(), ...this.state.log].slice(0, MAX_LOG);
    return this.stateOps("log");
  }

  async log(entry) {
    await this.vault.write(this.logOps([{ at: new Date().toISOString(), ...entry }]));
  }
}
