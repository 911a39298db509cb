// Where a record was made: the current GPS fix (navigator.geolocation) with its accuracy and
// source, or a pin placed by hand on a map when the fix is poor (> 50 m) or missing, or, by an
// explicit tap, the poor fix itself (a fix never needs a pin on an empty map).
// The map is the site's (static/site/map.js: the project's Leaflet, the base map the server
// describes, kept offline by the service worker, a scale bar); over it the user's areas'
// outlines, the records on this handheld and the fix with its accuracy circle, so that with
// no base map at all there is still something to place a pin against.

import { config, POOR_FIX_M } from "./config.js";
import { button, h, uid } from "./dom.js";

// Browsers do not say where a fix came from; a fine one is satellite, a coarse one is not.
function sourceOf(accuracy) {
  return accuracy <= 100 ? "gps" : "network";
}

function round(n, places = 7) {
  const f = 10 ** places;
  return Math.round(n * f) / f;
}

export class LocationField {
  // existing: {location, accuracy_m, fix_source} of a record being edited (kept unless changed)
  // places: [{lat, lng}] of records on this handheld, drawn as dots for orientation
  constructor({ areas = [], existing = null, places = [] } = {}) {
    this.areas = areas;
    this.places = places;
    this.hasBasemap = Boolean(config.mapConfig && config.mapConfig.tiles);
    this.nothingToDraw = !this.hasBasemap && !places.length && !areas.some((a) => a.geometry);
    this.fix = null;
    this.fixError = null;
    this.pin = null;
    this.mode = existing ? "existing" : "gps";
    this.existing = existing && existing.location ? existing : null;
    if (!this.existing && existing) this.mode = "gps";
    this.map = null;
    this.marker = null;
    this.watchId = null;
    const id = uid("loc");
    this.statusEl = h("p", { class: "loc-status", id: `${id}-status`, role: "status", "aria-live": "polite" });
    this.errorEl = h("p", { class: "error", id: `${id}-err`, hidden: true });
    this.useFixBtn = button("Use current GPS fix", () => this.useGps(), { class: "btn secondary" });
    this.pinBtn = button("Place a pin on the map", () => this.showMap(true), { class: "btn secondary",
      hidden: this.nothingToDraw });
    this.poorFixBtn = button("Use this fix", () => this.usePoorFix(), { class: "btn secondary", hidden: true });
    this.centreBtn = button("Pin at map centre", () => this.pinAt(this.map.getCenter()),
      { class: "btn secondary", hidden: true });
    this.mapEl = h("div", { class: "map", id: `${id}-map`, hidden: true, role: "application",
      "aria-label": "Map: tap to place the pin, or move the map with the arrow keys and press \"Pin at map centre\"" });
    this.crosshair = h("div", { class: "crosshair", "aria-hidden": "true" });
    this.element = h("fieldset", { class: "location", "aria-describedby": `${id}-status ${id}-err` },
      h("legend", {}, "Location", h("span", { class: "req", "aria-hidden": "true" }, " *")),
      this.statusEl,
      h("div", { class: "row" }, this.useFixBtn, this.poorFixBtn, this.pinBtn),
      h("div", { class: "map-wrap" }, this.mapEl, this.crosshair),
      this.centreBtn,
      this.errorEl,
    );
    this.waited = false;
    this.timer = setTimeout(() => { this.waited = true; this.render(); }, 5000);
    this.start();
    this.render();
  }

  start() {
    if (!("geolocation" in navigator)) {
      this.fixError = "This device has no location service.";
      return;
    }
    this.watchId = navigator.geolocation.watchPosition(
      (position) => {
        this.fix = {
          lon: position.coords.longitude, lat: position.coords.latitude,
          accuracy: position.coords.accuracy, at: position.timestamp,
        };
        this.fixError = null;
        this.render();
      },
      (error) => {
        this.fixError = error.code === 1 ? "Location permission was refused." : "No GPS fix yet.";
        this.render();
      },
      { enableHighAccuracy: true, maximumAge: 15000, timeout: 30000 },
    );
  }

  get poor() {
    return !this.fix || this.fix.accuracy > POOR_FIX_M;
  }

  // The user takes the poor fix as it is (its accuracy is recorded with it).
  usePoorFix() {
    if (!this.fix) return;
    this.useGps();
    this.mode = "poorfix";
    this.setError("");
    this.render();
  }

  useGps() {
    this.mode = "gps";
    this.pin = null;
    if (this.marker) {
      this.marker.remove();
      this.marker = null;
    }
    this.render();
  }

  render() {
    let text;
    if (this.mode === "existing") {
      const e = this.existing;
      text = `Saved location (${e.fix_source === "manual" ? "manual pin"
        : `${(config.labels.fix_source || {})[e.fix_source] || e.fix_source || "fix"}`}`
        + `${e.accuracy_m !== null && e.accuracy_m !== undefined ? `, ±${Math.round(e.accuracy_m)} m` : ""}).`;
    } else if (this.mode === "manual" && this.pin) {
      text = `Manual pin at ${this.pin.lat.toFixed(5)}, ${this.pin.lng.toFixed(5)}.`;
    } else if (this.fix && !this.poor) {
      text = `GPS fix ±${Math.round(this.fix.accuracy)} m (${sourceOf(this.fix.accuracy).toUpperCase()}).`;
    } else if (this.fix && this.mode === "poorfix") {
      text = `Using the GPS fix as it is (±${Math.round(this.fix.accuracy)} m).`;
    } else if (this.fix) {
      const where = this.nothingToDraw ? "use it as it is, or wait for a better one"
        : this.hasBasemap ? "place a pin on the map, or use it as it is"
          : "place a pin by your areas' outlines (there is no base map), or use it as it is";
      text = `The fix is poor (±${Math.round(this.fix.accuracy)} m): ${where}.`;
    } else if (this.nothingToDraw) {
      text = `${this.fixError || "Waiting for a GPS fix…"} There is no map to place a pin on here: `
        + "the location will come from the GPS.";
    } else {
      text = `${this.fixError || "Waiting for a GPS fix…"} Place a pin on the map if it does not come.`;
    }
    this.statusEl.textContent = text;
    this.useFixBtn.hidden = this.mode === "gps";
    this.poorFixBtn.hidden = !(this.fix && this.poor) || this.mode === "poorfix";
    if (this.fix && this.poor) this.poorFixBtn.textContent = `Use this fix (±${Math.round(this.fix.accuracy)} m)`;
    if (this.mode === "gps" && (this.fix ? this.poor : this.waited || this.fixError)) this.showMap(false);
    this.drawFix();
  }

  drawFix() {
    const L = window.L;
    if (!this.map || !L) return;
    if (!this.fix) return;
    const at = [this.fix.lat, this.fix.lon];
    if (!this.fixCircle) {
      this.fixCircle = L.circle(at, { radius: this.fix.accuracy, color: "#1f6feb", weight: 1, fillOpacity: 0.08,
        interactive: false, className: "fix-circle" }).addTo(this.map);
    } else {
      this.fixCircle.setLatLng(at).setRadius(this.fix.accuracy);
    }
  }

  showMap(manual) {
    if (this.nothingToDraw) return; // no base map, no outline, no record: nothing to pin against
    if (manual) this.mode = "manual";
    this.mapEl.hidden = false;
    this.centreBtn.hidden = false;
    this.crosshair.classList.add("on");
    this.ensureMap();
  }

  ensureMap() {
    const L = window.L;
    if (!L) {
      this.statusEl.textContent += " (The map could not load.)";
      return;
    }
    if (this.map) {
      this.map.invalidateSize();
      return;
    }
    if (!window.fieldsyncMap) {
      this.statusEl.textContent += " (The map could not load.)";
      return;
    }
    this.map = window.fieldsyncMap.create(this.mapEl, { noHome: true, config: config.mapConfig });
    this.mapEl.dataset.basemapVersion = (config.mapConfig.tiles && config.mapConfig.tiles.version) || "";
    for (const p of this.places) {
      L.circleMarker([p.lat, p.lng], { radius: 4, color: "#57606a", weight: 1, fillOpacity: 0.5, interactive: false,
        className: "place-marker" }).addTo(this.map);
    }
    const outlines = this.areas.filter((a) => a.geometry).map((a) => ({ type: "Feature", geometry: a.geometry,
      properties: { name: a.name } }));
    let bounds = null;
    if (outlines.length) {
      const layer = L.geoJSON({ type: "FeatureCollection", features: outlines },
        { style: { color: "#0b4f6c", weight: 2, fillOpacity: 0.05 }, interactive: false }).addTo(this.map);
      bounds = layer.getBounds();
    }
    const centre = this.pin || (this.fix && { lat: this.fix.lat, lng: this.fix.lon })
      || (this.existing && { lat: this.existing.location.coordinates[1], lng: this.existing.location.coordinates[0] });
    if (centre && !this.hasBasemap && bounds && bounds.isValid()) {
      // Nothing under the pin but outlines: zoom out, centred on the fix, until the outlines are
      // in view too, so there is something to aim by.
      const b = L.latLngBounds(bounds.getSouthWest(), bounds.getNorthEast()).extend(centre);
      const c = L.latLng(centre);
      const dLat = Math.max(b.getNorth() - c.lat, c.lat - b.getSouth());
      const dLng = Math.max(b.getEast() - c.lng, c.lng - b.getWest());
      const around = L.latLngBounds([c.lat - dLat, c.lng - dLng], [c.lat + dLat, c.lng + dLng]);
      this.map.setView(c, Math.min(17, this.map.getBoundsZoom(around, false, L.point(16, 16))));
    } else if (centre) this.map.setView(centre, 17);
    else if (bounds && bounds.isValid()) this.map.fitBounds(bounds);
    else {
      const home = (config.mapConfig.tiles && config.mapConfig.tiles.center) || config.mapConfig.home
        || { lat: 53.52, lng: -2.58, zoom: 12 };
      this.map.setView([home.lat, home.lng], home.zoom);
    }
    this.map.on("click", (event) => this.pinAt(event.latlng));
    this.drawFix();
    requestAnimationFrame(() => this.map && this.map.invalidateSize());
  }

  pinAt(latlng) {
    const L = window.L;
    this.mode = "manual";
    this.pin = { lat: latlng.lat, lng: latlng.lng };
    if (!this.marker) {
      this.marker = L.marker(latlng, { draggable: true, keyboard: true, title: "Record location", alt: "Pin" })
        .addTo(this.map);
      this.marker.on("dragend", () => {
        const p = this.marker.getLatLng();
        this.pin = { lat: p.lat, lng: p.lng };
        this.render();
      });
    } else {
      this.marker.setLatLng(latlng);
    }
    this.setError("");
    this.render();
  }

  // {location, accuracy_m, fix_source}, or null when there is nothing good enough yet.
  value() {
    if (this.mode === "existing") {
      return { location: this.existing.location, accuracy_m: this.existing.accuracy_m ?? null,
        fix_source: this.existing.fix_source || "unknown" };
    }
    if (this.mode === "manual" && this.pin) {
      return { location: { type: "Point", coordinates: [round(this.pin.lng), round(this.pin.lat)] },
        accuracy_m: null, fix_source: "manual" };
    }
    if (this.fix && (!this.poor || this.mode === "poorfix")) {
      return { location: { type: "Point", coordinates: [round(this.fix.lon), round(this.fix.lat)] },
        accuracy_m: Math.round(this.fix.accuracy * 10) / 10, fix_source: sourceOf(this.fix.accuracy) };
    }
    return null;
  }

  setError(message) {
    this.errorEl.textContent = message || "";
    this.errorEl.hidden = !message;
  }

  focus() {
    (this.mapEl.hidden ? this.pinBtn : this.centreBtn).focus();
  }

  destroy() {
    clearTimeout(this.timer);
    if (this.watchId !== null) navigator.geolocation.clearWatch(this.watchId);
    this.watchId = null;
    if (this.map) this.map.remove();
    this.map = null;
    this.fixCircle = null;
  }
}
