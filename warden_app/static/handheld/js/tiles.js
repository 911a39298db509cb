// The offline map: which base-map tiles cover the user's areas, and asking the service worker
// (templates/handheld/sw.js) to keep exactly those. Tiles are public geography, not records,
// so they live in Cache Storage, not the encrypted vault; the list follows the areas the
// server names in the manifest and the base map's version, and is rebuilt when either changes.

import { config } from "./config.js";

export const TILE_CACHE_PREFIX = "fieldsync-tiles-";
export const META_URL = `${config.scope || "/warden/"}__tiles__/meta.json`;

function basemap() {
  const tiles = config.mapConfig && config.mapConfig.tiles;
  return tiles && tiles.local && tiles.version ? tiles : null;
}

function tileX(lon, z) {
  return Math.floor(((lon + 180) / 360) * 2 ** z);
}

function tileY(lat, z) {
  const rad = (Math.max(Math.min(lat, 85.0511), -85.0511) * Math.PI) / 180;
  return Math.floor(((1 - Math.asinh(Math.tan(rad)) / Math.PI) / 2) * 2 ** z);
}

// [west, south, east, north] of a GeoJSON geometry's coordinates, or null.
function bbox(geometry) {
  const box = [Infinity, Infinity, -Infinity, -Infinity];
  const walk = (c) => {
    if (typeof c[0] === "number") {
      box[0] = Math.min(box[0], c[0]); box[1] = Math.min(box[1], c[1]);
      box[2] = Math.max(box[2], c[0]); box[3] = Math.max(box[3], c[1]);
    } else c.forEach(walk);
  };
  if (geometry && geometry.coordinates) walk(geometry.coordinates);
  return box[0] <= box[2] ? box : null;
}

// The tiles at zoom z of the boxes, one tile of margin, within the base map's box.
function tilesAt(boxes, z, limits) {
  const keys = new Set();
  const n = 2 ** z;
  for (const b of boxes) {
    const west = Math.max(b[0], limits[0]);
    const south = Math.max(b[1], limits[1]);
    const east = Math.min(b[2], limits[2]);
    const north = Math.min(b[3], limits[3]);
    if (west > east || south > north) continue;
    const x0 = Math.max(tileX(west, z) - 1, 0);
    const x1 = Math.min(tileX(east, z) + 1, n - 1);
    const y0 = Math.max(tileY(north, z) - 1, 0);
    const y1 = Math.min(tileY(south, z) + 1, n - 1);
    for (let x = x0; x <= x1; x += 1) for (let y = y0; y <= y1; y += 1) keys.add(`${z}/${x}/${y}`);
  }
  return [...keys];
}

// {urls, zooms: [min, max kept], capped: null | {zoom, needed, limit}} for these areas.
export function plan(areas) {
  const tiles = basemap();
  if (!tiles) return null;
  const [wantMin, wantMax] = config.tileZooms || [12, 17];
  const from = Math.max(wantMin, tiles.min_zoom);
  const to = Math.min(wantMax, tiles.max_zoom);
  const boxes = (areas || []).map((a) => bbox(a.geometry)).filter(Boolean);
  const limit = config.tileMax ?? 3000;
  const urls = [];
  let capped = null;
  let kept = null;
  for (let z = from; z <= to; z += 1) {
    const level = tilesAt(boxes, z, tiles.bounds || [-180, -85.06, 180, 85.06]);
    if (urls.length + level.length > limit) {
      capped = { zoom: z, needed: urls.length + level.length, limit };
      break;
    }
    urls.push(...level.map((key) => tiles.url.replace("{z}/{x}/{y}", key)));
    kept = z;
  }
  const zooms = kept === null ? null : [from, kept];
  const key = JSON.stringify([tiles.version, zooms, limit, urls.length, boxes.map((b) => b.map((v) => v.toFixed(5)))]);
  return { version: tiles.version, name: tiles.name || "", urls, zooms, capped, key };
}

// What is kept now: the meta the service worker wrote, or null.
export async function cached() {
  if (!self.caches) return null;
  const tiles = basemap();
  if (!tiles) return null;
  const name = TILE_CACHE_PREFIX + tiles.version;
  if (!(await caches.has(name))) return null;
  const response = await (await caches.open(name)).match(META_URL);
  if (!response) return null;
  try {
    return await response.json();
  } catch {
    return null;
  }
}

const listeners = new Set();
export function onTilesChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.addEventListener("message", (event) => {
    const type = event.data && event.data.type;
    if (type === "tiles-progress" || type === "tiles-done" || type === "tiles-failed") {
      document.documentElement.dataset.tiles = type === "tiles-done" ? "ready" : type.slice(6);
      for (const fn of listeners) fn(event.data);
    }
  });
}

// Ask the service worker to bring the cache in line with the areas (nothing when it already is,
// unless forced). Resolves to the plan asked for, or null (no local base map, no worker).
export async function refreshTiles(areas, { force = false } = {}) {
  const wanted = plan(areas);
  if (!wanted || !("serviceWorker" in navigator)) return null;
  const now = await cached().catch(() => null);
  if (!force && now && now.key === wanted.key) {
    document.documentElement.dataset.tiles = "ready";
    return wanted;
  }
  const registration = await navigator.serviceWorker.ready;
  if (!registration.active) return null;
  document.documentElement.dataset.tiles = "progress";
  registration.active.postMessage({ type: "tiles", version: wanted.version, urls: wanted.urls, key: wanted.key,
    zooms: wanted.zooms, capped: wanted.capped, name: wanted.name });
  return wanted;
}

function megabytes(bytes) {
  return `${(bytes / 1048576).toFixed(bytes < 10 * 1048576 ? 1 : 0)} MB`;
}

// One or two sentences about the offline map, for the settings and sync screens.
export function describeTiles(meta, wanted) {
  if (!basemap()) {
    return config.mapConfig && config.mapConfig.tiles
      ? "The base map comes from an outside server: it is not kept for offline use."
      : "No base map is installed: maps show your areas' outlines and records.";
  }
  if (!meta) return "The offline map is not stored yet: it is fetched after signing in, with a connection.";
  const zooms = meta.zooms ? `, zoom ${meta.zooms[0]}–${meta.zooms[1]}` : "";
  let text = `Offline map: ${meta.count} tiles, ${megabytes(meta.bytes)}${zooms}`
    + `${meta.missing ? ` (${meta.missing} could not be fetched)` : ""}.`;
  const capped = meta.capped || (wanted && wanted.capped);
  if (capped) {
    text += ` Zoom ${capped.zoom} and closer are not kept: they would need ${capped.needed} tiles, over this `
      + `server's limit of ${capped.limit} (HANDHELD_TILE_MAX).`;
  }
  if (wanted && meta.key !== wanted.key) text += " It will be updated for your current areas.";
  return text;
}
