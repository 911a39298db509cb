/* fieldsync warden service worker, version {{ version }}.
 *
 * Caches the app shell and its static files so the app opens with no network at all.
 * It never caches API calls: records, tokens and photos only ever live in the encrypted
 * IndexedDB vault (static/handheld/js/vault.js), never in a Cache Storage entry.
 *
 * It also keeps the imported base map's tiles for the user's areas (the page sends the list,
 * static/handheld/js/tiles.js): public geography, in a cache per base-map version, served
 * cache-first since a tile URL's bytes never change.
 */
"use strict";

const VERSION = "{{ version }}";
const PREFIX = "fieldsync-warden-";
const CACHE = PREFIX + VERSION;
const SCOPE = "{{ scope }}";
const SHELL = "{{ shell }}";
const PRECACHE = {{ precache|safe }};
const CACHED_PATHS = new Set(PRECACHE);
const NAVIGATION_TIMEOUT_MS = 4000;
const TILE_PREFIX = "fieldsync-tiles-";
const TILE_PATH = "/tiles/";
const TILE_META = SCOPE + "__tiles__/meta.json";
const TILE_PARALLEL = 4;

async function precache() {
  const cache = await caches.open(CACHE);
  await cache.addAll(PRECACHE.map((url) => new Request(url, { cache: "reload", credentials: "omit" })));
}

self.addEventListener("install", (event) => {
  event.waitUntil(precache().then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith(PREFIX) && name !== CACHE) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

// The page asks for the cache again after a wipe (a revoked device deletes every cache).
self.addEventListener("message", (event) => {
  if (event.data && event.data.type === "precache") {
    event.waitUntil(precache().then(
      () => event.source && event.source.postMessage({ type: "precached", version: VERSION }),
      () => event.source && event.source.postMessage({ type: "precache-failed", version: VERSION }),
    ));
  }
});

// --- the offline map ---------------------------------------------------------------------------

let tileRun = null; // the download under way
let tileNext = null; // the newest list asked for meanwhile

function tell(client, message) {
  if (client) client.postMessage(message);
  else self.clients.matchAll().then((all) => all.forEach((c) => c.postMessage(message)));
}

async function keepTiles(job, client) {
  const name = TILE_PREFIX + job.version;
  for (const other of await caches.keys()) {
    if (other.startsWith(TILE_PREFIX) && other !== name) await caches.delete(other); // an older base map
  }
  // One Cache object for the whole run: if a wipe deletes it meanwhile, nothing resurrects it.
  const cache = await caches.open(name);
  const previous = await cache.match(TILE_META).then((r) => (r ? r.json() : null)).catch(() => null);
  const sizes = (previous && previous.sizes) || {};
  const wanted = new Set(job.urls.filter((url) => typeof url === "string" && url.startsWith(TILE_PATH)));
  for (const request of await cache.keys()) {
    const path = new URL(request.url).pathname;
    if (path !== TILE_META && !wanted.has(path)) {
      await cache.delete(request);
      delete sizes[path];
    }
  }
  const todo = [...wanted].filter((url) => !(url in sizes));
  let done = wanted.size - todo.length;
  let missing = 0;
  let cursor = 0;
  async function worker() {
    while (cursor < todo.length) {
      const url = todo[cursor];
      cursor += 1;
      try {
        const response = await fetch(url, { credentials: "omit" });
        if (response.status === 200) {
          const body = await response.clone().arrayBuffer();
          await cache.put(url, response);
          sizes[url] = body.byteLength;
        } else if (response.status === 204) {
          sizes[url] = 0; // nothing there: the map shows nothing, online or not
        } else {
          missing += 1;
        }
      } catch {
        missing += 1;
      }
      done += 1;
      if (done % 25 === 0) tell(client, { type: "tiles-progress", done, total: wanted.size });
    }
  }
  await Promise.all(Array.from({ length: TILE_PARALLEL }, worker));
  const kept = Object.keys(sizes).filter((url) => sizes[url] > 0);
  const meta = {
    version: job.version, name: job.name || "", key: missing ? null : job.key, zooms: job.zooms || null,
    capped: job.capped || null, count: kept.length, bytes: kept.reduce((sum, url) => sum + sizes[url], 0),
    missing, at: Date.now(), sizes,
  };
  await cache.put(TILE_META, new Response(JSON.stringify(meta), { headers: { "Content-Type": "application/json" } }));
  tell(client, { type: "tiles-done", count: meta.count, bytes: meta.bytes, missing });
}

function scheduleTiles(job, client) {
  if (tileRun) {
    tileNext = { job, client };
    return tileRun;
  }
  tileRun = keepTiles(job, client)
    .catch(() => tell(client, { type: "tiles-failed" }))
    .finally(() => {
      tileRun = null;
      if (tileNext) {
        const next = tileNext;
        tileNext = null;
        scheduleTiles(next.job, next.client);
      }
    });
  return tileRun;
}

self.addEventListener("message", (event) => {
  const data = event.data;
  if (data && data.type === "tiles" && typeof data.version === "string" && /^[0-9a-f]{16}$/.test(data.version)
      && Array.isArray(data.urls)) {
    event.waitUntil(scheduleTiles(data, event.source));
  }
});

async function tile(request) {
  const path = new URL(request.url).pathname;
  for (const name of await caches.keys()) {
    if (!name.startsWith(TILE_PREFIX)) continue;
    const cached = await (await caches.open(name)).match(path);
    if (cached) return cached;
  }
  try {
    return await fetch(request);
  } catch {
    return new Response(null, { status: 204 }); // offline, outside the kept areas: an empty tile
  }
}

function withTimeout(promise, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("timeout")), ms);
    promise.then((value) => { clearTimeout(timer); resolve(value); },
                 (error) => { clearTimeout(timer); reject(error); });
  });
}

// The shell: network first (so an online visit gets the newest), the cached copy offline.
async function navigation(request) {
  try {
    const response = await withTimeout(fetch(request, { cache: "no-store" }), NAVIGATION_TIMEOUT_MS);
    if (response.ok && (await caches.has(CACHE))) {
      const cache = await caches.open(CACHE);
      await cache.put(SHELL, response.clone());
    }
    return response;
  } catch (error) {
    const cached = await caches.match(SHELL, { ignoreSearch: true });
    if (cached) return cached;
    throw error;
  }
}

// Static files: the cache first, the network for anything missing.
async function asset(request) {
  const cached = await caches.match(request, { ignoreSearch: true });
  if (cached) return cached;
  return fetch(request);
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (url.pathname.startsWith("/api/")) return; // data never goes near a cache
  if (url.pathname.startsWith(TILE_PATH)) {
    event.respondWith(tile(request));
    return;
  }
  if (request.mode === "navigate" && url.pathname.startsWith(SCOPE)) {
    event.respondWith(navigation(request));
  } else if (CACHED_PATHS.has(url.pathname)) {
    event.respondWith(asset(request));
  }
});
