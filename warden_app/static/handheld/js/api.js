// The sync protocol over fetch (docs/sync.md). Every call skips the HTTP cache and sends
// no cookies: the device token is the only credential, and nothing the server answers
// is stored anywhere but the encrypted vault.

export class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super((body && body.message) || `The server answered ${status}.`);
    this.status = status;
    this.body = body || {};
    this.code = this.body.code || `http_${status}`;
    this.retryAfter = retryAfter;
  }

  get wipe() {
    return this.status === 401 && this.body.code === "device_revoked" && this.body.wipe === true;
  }
}

export class NetworkError extends Error {
  constructor(message) {
    super(message || "No connection to the server.");
    this.code = "network";
  }
}

export class Api {
  constructor(base) {
    this.base = base;
    this.token = null;
  }

  async request(path, { method = "GET", json, body, contentType, timeout = 30000, auth = true } = {}) {
    const headers = { Accept: "application/json" };
    if (auth && this.token) headers.Authorization = `Bearer ${this.token}`;
    let payload = body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(json);
    } else if (contentType) {
      headers["Content-Type"] = contentType;
    }
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeout);
    let response;
    try {
      response = await fetch(this.base + path, {
        method, headers, body: payload, cache: "no-store", credentials: "omit", signal: controller.signal,
        redirect: "error",
      });
    } catch (error) {
      throw new NetworkError(error && error.name === "AbortError" ? "The server did not answer in time." : undefined);
    } finally {
      clearTimeout(timer);
    }
    if (method === "HEAD") {
      if (response.status === 401) throw new ApiError(401, { code: "not_authenticated" });
      return { status: response.status, data: null };
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) throw new ApiError(response.status, data, response.headers.get("Retry-After"));
    return { status: response.status, data };
  }

  enrol({ username, password, label, platform }) {
    return this.request("devices/enrol", { method: "POST", json: { username, password, label, platform }, auth: false });
  }

  manifest() {
    return this.request("sync/manifest");
  }

  push(mutations) {
    return this.request("sync/push", { method: "POST", json: { mutations }, timeout: 60000 });
  }

  pull(cursor, limit = 200) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set("cursor", cursor);
    return this.request(`sync/pull?${query}`, { timeout: 60000 });
  }

  status() {
    return this.request("sync/status");
  }

  hasAttachment(sha256) {
    return this.request(`attachments/${sha256}`, { method: "HEAD" });
  }

  putAttachment(sha256, bytes, type) {
    return this.request(`attachments/${sha256}`, { method: "PUT", body: bytes, contentType: type, timeout: 120000 });
  }
}

// A sent photo's thumbnail from the server (GET attachments/<sha>/thumbnail, device token):
// the handheld drops its own copy once uploaded. A Blob, or null when offline or refused.
export async function fetchThumbnail(base, token, sha256) {
  if (!token || !navigator.onLine || !/^[0-9a-f]{64}$/.test(sha256)) return null;
  try {
    const response = await fetch(`${base}attachments/${sha256}/thumbnail`, {
      headers: { Authorization: `Bearer ${token}` }, cache: "no-store", credentials: "omit", redirect: "error",
    });
    const type = response.headers.get("Content-Type") || "";
    if (!response.ok || !/^image\/(jpeg|png|webp)$/.test(type)) return null;
    return await response.blob();
  } catch {
    return null;
  }
}
