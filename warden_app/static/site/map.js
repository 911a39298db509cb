/* fieldsyncMap.create(element, options): a Leaflet map (the project's own copy) with the base
   map the server describes in the page's #map-config JSON (basemaps/config.py), a scale bar,
   and a note when there is no base map, so that vectors on a plain ground never read as a
   failure. Base maps: raster tiles (an imported MBTiles/PMTiles served at /tiles/, or
   TILE_URL), or vector tiles drawn by the vendored Leaflet.VectorGrid with a plain style.
   Used by every page's map, the handheld's and the desk's record map included. */
(function () {
  "use strict";
  function readConfig() {
    var node = document.getElementById("map-config");
    return node ? JSON.parse(node.textContent) : { tiles: null };
  }

  // A quiet, readable default for any vector tile schema (OpenMapTiles, OS Zoomstack,
  // Shortbread): by layer name, water blue, green spaces green, buildings tan, roads white
  // cased grey, labels and points left out (no text rendering), anything else a thin grey line.
  var PALETTE = [
    [/water|ocean|sea|river|lake|waterway|foreshore/i, { fill: true, fillColor: "#b7d3e9", fillOpacity: 1, color: "#9ec3e0", weight: 1 }],
    [/park|green|wood|forest|grass|landcover|national/i, { fill: true, fillColor: "#dcebd0", fillOpacity: 1, color: "#cfe3bf", weight: 0.5 }],
    [/building/i, { fill: true, fillColor: "#e4d8c8", fillOpacity: 1, color: "#cdbca6", weight: 0.5 }],
    [/road|transport|street|highway|rail|path/i, { color: "#9aa0a6", weight: 2, fill: false }],
    [/boundar|admin/i, { color: "#a38fb8", weight: 1, dashArray: "4 3", fill: false }],
    [/landuse|urban|residential|site/i, { fill: true, fillColor: "#ece8e1", fillOpacity: 1, color: "#ece8e1", weight: 0 }],
    [/label|name|place|poi|housenumber|text|point|mountain_peak/i, []],
  ];
  var DEFAULT_STYLE = { color: "#b0b4b8", weight: 1, fill: false };

  function vectorStyles(layers) {
    var styles = {};
    (layers || []).forEach(function (id) {
      var style = DEFAULT_STYLE;
      for (var i = 0; i < PALETTE.length; i += 1) {
        if (PALETTE[i][0].test(id)) {
          style = PALETTE[i][1];
          break;
        }
      }
      styles[id] = style;
    });
    return styles;
  }

  var rendererLoading = null;
  function loadRenderer(src) {
    if (window.L && L.vectorGrid) return Promise.resolve();
    if (!rendererLoading) {
      rendererLoading = new Promise(function (resolve, reject) {
        var script = document.createElement("script");
        script.src = src;
        script.onload = function () { resolve(); };
        script.onerror = function () { rendererLoading = null; reject(new Error("vector renderer not loaded")); };
        document.head.appendChild(script);
      });
    }
    return rendererLoading;
  }

  function tileOptions(tiles) {
    var options = {
      attribution: tiles.attribution || "",
      minZoom: 0,
      maxZoom: 19,
      minNativeZoom: tiles.min_zoom || 0,
      maxNativeZoom: tiles.max_zoom || 19,
    };
    if (tiles.bounds) {
      // No requests outside the archive's box: nothing there to draw.
      options.bounds = L.latLngBounds([tiles.bounds[1], tiles.bounds[0]], [tiles.bounds[3], tiles.bounds[2]]);
    }
    return options;
  }

  // Adds the base map to a map; resolves to its layer (null: none, or it could not be drawn).
  function addBasemap(map, tiles, element) {
    if (!tiles) return Promise.resolve(null);
    var options = tileOptions(tiles);
    if (tiles.kind === "vector") {
      return loadRenderer(tiles.renderer).then(function () {
        options.rendererFactory = L.canvas.tile;
        options.vectorTileLayerStyles = vectorStyles(tiles.layers);
        options.interactive = false;
        // VectorGrid has no overzoom: past the archive's last zoom the map stops zooming.
        map.setMaxZoom(Math.max(tiles.max_zoom || 19, map.getMinZoom()));
        var layer = L.vectorGrid.protobuf(tiles.url, options).addTo(map);
        element.setAttribute("data-basemap", "vector");
        return layer;
      }, function () {
        element.setAttribute("data-basemap", "failed");
        return null;
      });
    }
    var layer = L.tileLayer(tiles.url, options).addTo(map);
    element.setAttribute("data-basemap", "raster");
    return Promise.resolve(layer);
  }

  function noBasemapNote(map, element) {
    element.classList.add("no-basemap");
    element.setAttribute("data-basemap", "none");
    var note = L.control({ position: "bottomright" });
    note.onAdd = function () {
      var div = L.DomUtil.create("div", "map-note");
      div.textContent = "No base map: outlines and records only.";
      return div;
    };
    note.addTo(map);
  }

  function create(element, options) {
    options = options || {};
    var config = options.config || readConfig();
    var tiles = config.tiles || null;
    var map = L.map(element, { zoomControl: true, attributionControl: Boolean(tiles), keyboard: true });
    if (tiles) {
      map.basemapReady = addBasemap(map, tiles, element);
    } else {
      noBasemapNote(map, element);
      map.basemapReady = Promise.resolve(null);
    }
    L.control.scale({ imperial: false }).addTo(map);
    var home = (tiles && tiles.center) || config.home || { lat: 53.52, lng: -2.58, zoom: 12 };
    if (!options.noHome) {
      map.setView([home.lat, home.lng], home.zoom);
    }
    return map;
  }
  window.fieldsyncMap = { create: create, config: readConfig, vectorStyles: vectorStyles };
})();
