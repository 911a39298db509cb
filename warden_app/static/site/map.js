/* fieldsyncMap.create(element): a Leaflet map (the project's own copy) with the base map the
   server describes in the page's #map-config JSON (basemaps/config.py), a scale bar, and a
   note when there is no base map, so that vectors on a plain ground never read as a failure. */
(function () {
  "use strict";
  function readConfig() {
    var node = document.getElementById("map-config");
    return node ? JSON.parse(node.textContent) : { tiles: null };
  }
  function create(element, options) {
    var config = readConfig();
    options = options || {};
    var map = L.map(element, { zoomControl: true, attributionControl: Boolean(config.tiles) });
    if (config.tiles) {
      L.tileLayer(config.tiles.url, {
        attribution: config.tiles.attribution || "",
        minZoom: config.tiles.min_zoom || 0,
        maxZoom: config.tiles.max_zoom || 19,
      }).addTo(map);
    } else {
      element.classList.add("no-basemap");
      var note = L.control({ position: "bottomright" });
      note.onAdd = function () {
        var div = L.DomUtil.create("div", "map-note");
        div.textContent = "No base map installed: outlines and records only.";
        return div;
      };
      note.addTo(map);
    }
    L.control.scale({ imperial: false }).addTo(map);
    var home = config.home || { lat: 53.52, lng: -2.58, zoom: 12 };
    if (!options.noHome) {
      map.setView([home.lat, home.lng], home.zoom);
    }
    return map;
  }
  window.fieldsyncMap = { create: create, config: readConfig };
})();
