/* The analyst's map: the page's records as points (each links to its record page), the
   internal counts and hotspot layers of the aggregates selectors, and a small polygon tool
   that writes the drawn shape as WKT into the form's hidden `polygon` field (the records
   API's own filter). Everything comes from the page's #workspace-data; nothing is fetched. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("workspace-data").textContent);
  var form = document.getElementById("workspace-filters");
  var hidden = document.getElementById("filter-polygon");
  var map = fieldsyncMap.create(document.getElementById("records-map"));
  var overlays = {};
  var fitted = null;

  // Filters that apply to one kind of record only are switched off for the others, so a
  // change of kind never sends a filter the API would refuse.
  var typeSelect = document.getElementById("filter-type");
  function applyType() {
    form.querySelectorAll("[data-types]").forEach(function (label) {
      var on = label.getAttribute("data-types").split(" ").indexOf(typeSelect.value) >= 0;
      label.hidden = !on;
      label.querySelectorAll("select, input").forEach(function (el) { el.disabled = !on; });
    });
  }
  typeSelect.addEventListener("change", applyType);
  applyType();

  var layers = data.layers;
  if (layers) {
    overlays["Records per area"] = L.geoJSON(layers.counts, {
      style: function (f) {
        return { color: "#1d3b53", weight: 1, fillColor: "#08519c", fillOpacity: 0.1 + 0.55 * f.properties.share };
      },
      onEachFeature: function (f, layer) {
        layer.bindTooltip(f.properties.name + ": " + f.properties.count + " records", { sticky: true, className: "map-tip" });
      },
    });
    overlays["Hotspots"] = L.geoJSON(layers.hotspots, {
      interactive: false,
      style: function (f) { return { stroke: false, fillColor: layers.classes[f.properties["class"]], fillOpacity: 0.75 }; },
    });
    overlays["Records per area"].addTo(map);
    fitted = overlays["Records per area"].getBounds();
  }
  var points = L.geoJSON(data.points, {
    pointToLayer: function (f, latlng) {
      return L.circleMarker(latlng, { radius: 6, color: "#fff", weight: 1.5, fillColor: "#c2410c", fillOpacity: 0.95 });
    },
    onEachFeature: function (f, layer) {
      var when = (f.properties.when || "").slice(0, 10);
      layer.bindTooltip((f.properties.what || "Record") + (when ? " · " + when : ""), { className: "map-tip" });
      layer.on("click", function () { if (!drawing) { window.location.href = f.properties.url; } });
    },
  }).addTo(map);
  overlays["Records of this page"] = points;
  L.control.layers(null, overlays, { collapsed: false }).addTo(map);
  if (points.getLayers().length) {
    fitted = points.getBounds();
  }

  // --- the draw tool: click to add corners, "Finish shape" to close it ------------------
  var start = document.getElementById("draw-start");
  var finish = document.getElementById("draw-finish");
  var clear = document.getElementById("draw-clear");
  var hint = document.getElementById("draw-hint");
  var corners = [];
  var sketch = null;
  var drawing = false;
  var shape = null;

  function parseWkt(text) {
    var m = /^\s*POLYGON\s*\(\((.*?)\)/i.exec(text || "");
    if (!m) { return null; }
    return m[1].split(",").map(function (pair) {
      var xy = pair.trim().split(/\s+/);
      return [parseFloat(xy[1]), parseFloat(xy[0])];
    });
  }
  function toWkt(latlngs) {
    var ring = latlngs.map(function (p) { return p.lng.toFixed(6) + " " + p.lat.toFixed(6); });
    ring.push(ring[0]);
    return "POLYGON((" + ring.join(", ") + "))";
  }
  var existing = parseWkt(hidden.value);
  if (existing) {
    shape = L.polygon(existing, { color: "#6f42c1", weight: 2, fillOpacity: 0.08, interactive: false }).addTo(map);
    fitted = shape.getBounds();
  }
  if (fitted && fitted.isValid()) {
    map.fitBounds(fitted, { padding: [16, 16], maxZoom: 16, animate: false });
  }

  function redraw() {
    if (sketch) { map.removeLayer(sketch); }
    sketch = corners.length ? L.polygon(corners, { color: "#6f42c1", dashArray: "4 4", weight: 2, fillOpacity: 0.05 }).addTo(map) : null;
    finish.disabled = corners.length < 3;
  }
  start.addEventListener("click", function () {
    drawing = true;
    corners = [];
    redraw();
    start.hidden = true;
    finish.hidden = false;
    map.getContainer().classList.add("drawing");
    hint.textContent = "Click the map at each corner of the area, then press Finish shape.";
  });
  map.on("click", function (e) {
    if (!drawing) { return; }
    corners.push(e.latlng);
    redraw();
  });
  finish.addEventListener("click", function () {
    if (corners.length < 3) { return; }
    hidden.value = toWkt(corners);
    drawing = false;
    hint.textContent = "Showing the records inside the shape…";
    form.submit();
  });
  clear.addEventListener("click", function () {
    hidden.value = "";
    form.submit();
  });
})();
