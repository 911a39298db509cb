// Photos from the camera or from files. Each is addressed by the sha256 of its bytes
// (crypto.subtle.digest), kept encrypted in the vault until uploaded, and named by hash in
// the record's `photos`. Formats the server does not take (HEIC…) and oversize photos are
// re-encoded as JPEG on the handheld first.

import { fetchThumbnail } from "./api.js";
import { config } from "./config.js";
import { button, h, uid } from "./dom.js";

const ACCEPTED = new Set(["image/jpeg", "image/png", "image/webp"]);
const MAX_SIDE = 2560;
const MAX_PHOTOS = 20;

export async function sha256Hex(bytes) {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function reencode(file) {
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.85));
  if (!blob) throw new Error("The photo could not be converted.");
  return { bytes: await blob.arrayBuffer(), type: "image/jpeg" };
}

export async function preparePhoto(file, maxBytes) {
  let bytes = await file.arrayBuffer();
  let type = file.type;
  if (!ACCEPTED.has(type) || bytes.byteLength > maxBytes) ({ bytes, type } = await reencode(file));
  if (bytes.byteLength > maxBytes) throw new Error("The photo is too large even after conversion.");
  return { sha256: await sha256Hex(bytes), type, bytes };
}

export class PhotoField {
  // existing: sha256 list of the record; local: the unlocked store (for thumbnails of photos
  // still waiting to upload); maxBytes: the server's limit from the manifest.
  constructor({ existing = [], local, maxBytes = 10 * 1024 * 1024, disabled = false }) {
    this.kept = [...existing];
    this.added = [];
    this.urls = [];
    this.local = local;
    this.maxBytes = maxBytes;
    const id = uid("photo");
    this.list = h("ul", { class: "photos", "aria-label": "Photos of this record" });
    this.status = h("p", { class: "hint", role: "status", "aria-live": "polite" });
    const camera = h("input", { type: "file", accept: "image/*", capture: "environment", id: `${id}-camera`,
      class: "visually-hidden", "data-photo": "camera", disabled });
    const files = h("input", { type: "file", accept: "image/*", multiple: true, id: `${id}-files`,
      class: "visually-hidden", "data-photo": "files", disabled });
    for (const input of [camera, files]) input.addEventListener("change", () => this.take(input));
    this.element = h("fieldset", { class: "photo-field" },
      h("legend", {}, "Photos"),
      this.list,
      disabled ? null : h("div", { class: "row" },
        h("label", { for: camera.id, class: "btn secondary file-btn" }, "Take photo", camera),
        h("label", { for: files.id, class: "btn secondary file-btn" }, "Choose photos", files)),
      this.status,
    );
    this.disabled = disabled;
    this.renderList();
  }

  async take(input) {
    const chosen = [...input.files];
    input.value = "";
    for (const file of chosen) {
      if (this.kept.length + this.added.length >= MAX_PHOTOS) {
        this.status.textContent = `At most ${MAX_PHOTOS} photos per record.`;
        break;
      }
      try {
        this.status.textContent = "Adding photo…";
        const photo = await preparePhoto(file, this.maxBytes);
        if (!this.kept.includes(photo.sha256) && !this.added.some((p) => p.sha256 === photo.sha256)) {
          this.added.push(photo);
        }
        this.status.textContent = `Photo added (${Math.round(photo.bytes.byteLength / 1024)} kB).`;
      } catch (error) {
        this.status.textContent = `That photo could not be added: ${error.message}`;
      }
    }
    this.renderList();
  }

  async thumb(sha256, bytes, type) {
    let data = bytes ? { bytes, type } : null;
    if (!data && this.local) data = await this.local.photoBytes(sha256);
    let blob = data ? new Blob([data.bytes], { type: data.type }) : null;
    // Sent and dropped here: the server's thumbnail (never stored on the phone).
    if (!blob && this.local && this.local.state.session) {
      blob = await fetchThumbnail(config.api, this.local.state.session.token, sha256);
    }
    if (!blob) return null;
    const url = URL.createObjectURL(blob);
    this.urls.push(url);
    return url;
  }

  async renderList() {
    for (const url of this.urls) URL.revokeObjectURL(url);
    this.urls = [];
    const items = [...this.kept.map((sha) => ({ sha })), ...this.added.map((p) => ({ sha: p.sha256, photo: p }))];
    const rendered = await Promise.all(items.map(async (item, index) => {
      const url = await this.thumb(item.sha, item.photo && item.photo.bytes, item.photo && item.photo.type);
      const name = `Photo ${index + 1}`;
      return h("li", {},
        url ? h("img", { src: url, alt: name, width: 96, height: 96 })
          : h("span", { class: "photo-placeholder" }, `${name}: sent, shown when online`),
        this.disabled ? null : button(`Remove ${name.toLowerCase()}`, () => this.remove(item.sha),
          { class: "btn small secondary" }));
    }));
    this.list.replaceChildren(...rendered);
    if (!items.length) this.list.replaceChildren(h("li", { class: "empty" }, "No photos."));
  }

  remove(sha) {
    this.kept = this.kept.filter((s) => s !== sha);
    this.added = this.added.filter((p) => p.sha256 !== sha);
    this.renderList();
  }

  value() {
    return [...this.kept, ...this.added.map((p) => p.sha256)];
  }

  newPhotos() {
    return this.added;
  }

  destroy() {
    for (const url of this.urls) URL.revokeObjectURL(url);
    this.urls = [];
  }
}
