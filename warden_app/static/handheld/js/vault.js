// The encrypted local store.
//
// IndexedDB database "fieldsync-warden":
//   meta     plain bookkeeping only: the KDF salt and parameters, a PIN-check ciphertext,
//            the failed-PIN count and the number of changes waiting (for the lock screen).
//   records, outbox, photos, state
//            every value is {iv, ct}: AES-GCM-256 ciphertext of a JSON document (plus raw
//            bytes for photos), under a key that is HMAC-SHA-256(name), so neither record ids,
//            contents, tokens nor cursors can be read or even recognised without the PIN.
// The keys come from PBKDF2-SHA-256 (600 000 iterations, 16-byte random salt) over the PIN,
// are non-extractable CryptoKeys, and live only in memory: a reload or a lock drops them.
// Each ciphertext is bound to its store and slot (AES-GCM additional data), so blobs cannot
// be swapped between slots.

const DB_NAME = "fieldsync-warden";
const DB_VERSION = 1;
export const STORES = ["records", "outbox", "photos", "state"];
const ALL_STORES = ["meta", ...STORES];
export const KDF_ITERATIONS = 600000;
const CHECK_TEXT = "fieldsync-vault-v1";
export const MAX_PIN_FAILURES = 10;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class WrongPin extends Error {
  constructor(failures) {
    super("That PIN is not right.");
    this.failures = failures;
  }
}

function done(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function finished(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new DOMException("Transaction aborted", "AbortError"));
  });
}

let dbPromise = null;

function openDb() {
  if (!dbPromise) {
    dbPromise = new Promise((resolve, reject) => {
      const request = indexedDB.open(DB_NAME, DB_VERSION);
      request.onupgradeneeded = () => {
        const db = request.result;
        for (const name of ALL_STORES) {
          if (!db.objectStoreNames.contains(name)) db.createObjectStore(name);
        }
      };
      request.onsuccess = () => {
        const db = request.result;
        db.onversionchange = () => {
          db.close();
          dbPromise = null;
        };
        resolve(db);
      };
      request.onerror = () => reject(request.error);
    });
    dbPromise.catch(() => { dbPromise = null; });
  }
  return dbPromise;
}

export async function closeDb() {
  const pending = dbPromise;
  dbPromise = null;
  if (pending) {
    try {
      (await pending).close();
    } catch {
      // already gone
    }
  }
}

// Whether a vault exists, without creating an empty database as a side effect.
export async function vaultExists() {
  if (indexedDB.databases) {
    const names = (await indexedDB.databases()).map((d) => d.name);
    if (!names.includes(DB_NAME)) return false;
  }
  return !!(await metaGet("kdf"));
}

export async function metaGet(key) {
  const db = await openDb();
  return done(db.transaction("meta").objectStore("meta").get(key));
}

export async function metaPut(entries) {
  const db = await openDb();
  const tx = db.transaction("meta", "readwrite");
  for (const [key, value] of Object.entries(entries)) tx.objectStore("meta").put(value, key);
  await finished(tx);
}

async function deriveKeys(pin, salt, iterations) {
  const base = await crypto.subtle.importKey("raw", encoder.encode(pin), "PBKDF2", false, ["deriveBits"]);
  const bits = new Uint8Array(await crypto.subtle.deriveBits(
    { name: "PBKDF2", salt, iterations, hash: "SHA-256" }, base, 512));
  const encBits = bits.slice(0, 32);
  const macBits = bits.slice(32);
  try {
    const enc = await crypto.subtle.importKey("raw", encBits, { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
    const mac = await crypto.subtle.importKey("raw", macBits, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    return { enc, mac };
  } finally {
    bits.fill(0);
    encBits.fill(0);
    macBits.fill(0);
  }
}

function frame(obj, bytes) {
  const json = encoder.encode(JSON.stringify(obj));
  const tail = bytes ? new Uint8Array(bytes) : new Uint8Array(0);
  const out = new Uint8Array(4 + json.length + tail.length);
  new DataView(out.buffer).setUint32(0, json.length);
  out.set(json, 4);
  out.set(tail, 4 + json.length);
  return out;
}

function unframe(buffer) {
  const all = new Uint8Array(buffer);
  const length = new DataView(all.buffer, all.byteOffset, all.byteLength).getUint32(0);
  const obj = JSON.parse(decoder.decode(all.subarray(4, 4 + length)));
  const bytes = all.length > 4 + length ? all.slice(4 + length).buffer : null;
  return { obj, bytes };
}

function hex(buffer) {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export class Vault {
  constructor(keys) {
    this.keys = keys;
  }

  get open() {
    return this.keys !== null;
  }

  close() {
    this.keys = null;
  }

  _keys() {
    if (!this.keys) throw new Error("The vault is locked.");
    return this.keys;
  }

  async slot(store, name) {
    return hex(await crypto.subtle.sign("HMAC", this._keys().mac, encoder.encode(`${store}\u0000${name}`)));
  }

  async seal(store, slot, obj, bytes) {
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const ct = await crypto.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData: encoder.encode(`${store}/${slot}`) }, this._keys().enc, frame(obj, bytes));
    return { iv, ct };
  }

  async unseal(store, slot, value) {
    const plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: value.iv, additionalData: encoder.encode(`${store}/${slot}`) }, this._keys().enc, value.ct);
    return unframe(plain);
  }

  async get(store, name) {
    const slot = await this.slot(store, name);
    const db = await openDb();
    const value = await done(db.transaction(store).objectStore(store).get(slot));
    return value ? this.unseal(store, slot, value) : null;
  }

  // Every document of a store, decrypted (photos' bytes included).
  async all(store) {
    const db = await openDb();
    const tx = db.transaction(store);
    const [slots, values] = await Promise.all([
      done(tx.objectStore(store).getAllKeys()), done(tx.objectStore(store).getAll())]);
    const out = [];
    for (let i = 0; i < slots.length; i += 1) {
      try {
        out.push(await this.unseal(store, slots[i], values[i]));
      } catch (error) {
        console.warn("vault: a value could not be decrypted and is skipped", error);
      }
    }
    return out;
  }

  // Several writes in one IndexedDB transaction: everything is encrypted first, because a
  // transaction commits as soon as it waits on anything but itself.
  // ops: {store, name, obj, bytes?} | {store, name, del: true} | {store, clear: true} | {meta: {...}}
  async write(ops) {
    const prepared = [];
    for (const op of ops) {
      if (op.meta) prepared.push({ meta: op.meta });
      else if (op.clear) prepared.push({ store: op.store, clear: true });
      else {
        const slot = await this.slot(op.store, op.name);
        prepared.push({ store: op.store, slot, del: op.del,
          value: op.del ? null : await this.seal(op.store, slot, op.obj, op.bytes) });
      }
    }
    const names = [...new Set(prepared.map((p) => (p.meta ? "meta" : p.store)))];
    if (!names.length) return;
    const db = await openDb();
    const tx = db.transaction(names, "readwrite");
    for (const p of prepared) {
      if (p.meta) {
        for (const [key, value] of Object.entries(p.meta)) tx.objectStore("meta").put(value, key);
      } else if (p.clear) tx.objectStore(p.store).clear();
      else if (p.del) tx.objectStore(p.store).delete(p.slot);
      else tx.objectStore(p.store).put(p.value, p.slot);
    }
    await finished(tx);
  }
}

// A new vault for a new PIN (first login). Any earlier local data is deleted first.
export async function createVault(pin) {
  await wipeDatabases();
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const vault = new Vault(await deriveKeys(pin, salt, KDF_ITERATIONS));
  const check = await vault.seal("meta", "check", { check: CHECK_TEXT });
  await metaPut({
    kdf: { name: "PBKDF2", hash: "SHA-256", iterations: KDF_ITERATIONS, salt },
    check,
    failures: 0,
    pending: 0,
  });
  return vault;
}

export async function unlockVault(pin) {
  const kdf = await metaGet("kdf");
  if (!kdf) throw new Error("There is no local store.");
  const vault = new Vault(await deriveKeys(pin, kdf.salt, kdf.iterations));
  try {
    const { obj } = await vault.unseal("meta", "check", await metaGet("check"));
    if (obj.check !== CHECK_TEXT) throw new Error("bad check");
  } catch {
    vault.close();
    const failures = ((await metaGet("failures")) || 0) + 1;
    await metaPut({ failures });
    throw new WrongPin(failures);
  }
  await metaPut({ failures: 0 });
  return vault;
}

async function deleteDatabase(name) {
  await new Promise((resolve) => {
    const request = indexedDB.deleteDatabase(name);
    const timer = setTimeout(resolve, 5000);
    request.onsuccess = request.onerror = () => {
      clearTimeout(timer);
      resolve();
    };
  });
}

async function wipeDatabases() {
  await closeDb();
  const names = new Set([DB_NAME]);
  if (indexedDB.databases) for (const db of await indexedDB.databases()) names.add(db.name);
  for (const name of names) await deleteDatabase(name);
}

// Everything this origin keeps: every IndexedDB database, every cache, web storage.
export async function wipeEverything() {
  await wipeDatabases();
  if (self.caches) for (const name of await caches.keys()) await caches.delete(name);
  try {
    localStorage.clear();
    sessionStorage.clear();
  } catch {
    // storage may be unavailable
  }
}
