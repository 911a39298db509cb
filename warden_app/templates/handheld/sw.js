/* fieldsync warden service worker, version {{ version }}.
 *
 * Caches the app shell and its static files so the app opens with no network at all.
 * It never caches API calls: records, tokens and photos only ever live in the encrypted
 * IndexedDB vault (static/handheld/js/vault.js), never in a Cache Storage entry.
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
  if (request.mode === "navigate" && url.pathname.startsWith(SCOPE)) {
    event.respondWith(navigation(request));
  } else if (CACHED_PATHS.has(url.pathname)) {
    event.respondWith(asset(request));
  }
});
