/* The record page's map: the record, its route and items, and its area, drawn as
   vectors from the page's own JSON over the site's base map (site/map.js: the imported
   base map, TILE_URL, or none with a note and a scale bar). */
(function () {
  "use strict";
  var element = document.getElementById("record-map");
  var dataNode = document.getElementById("record-map-data");
  if (!element || !dataNode || typeof L === "undefined" || !window.fieldsyncMap) {
    return;
  }
  var data = JSON.parse(dataNode.textContent);
  var map = window.fieldsyncMap.create(element, { noHome: true });
  var styles = {
    area: { color: "#555", weight: 1, dashArray: "4 4", fill: false },
    route: { color: "#1f6feb", weight: 3 },
  };
  var layer = L.geoJSON(data, {
    style: function (feature) {
      return styles[feature.properties.kind] || {};
    },
    pointToLayer: function (feature, latlng) {
      var record = feature.properties.kind === "record";
      return L.circleMarker(latlng, {
        radius: record ? 9 : 6,
        color: record ? "#b42318" : "#9a6700",
        weight: 2,
        fillOpacity: 0.6,
        className: record ? "record-marker" : "item-marker",
      });
    },
    onEachFeature: function (feature, featureLayer) {
      if (feature.properties.label) {
        featureLayer.bindTooltip(feature.properties.label);
      }
    },
  }).addTo(map);
  // Frame the record and its items, not the whole area.
  var focus = L.featureGroup();
  layer.eachLayer(function (l) {
    if (l.feature.properties.kind !== "area") {
      focus.addLayer(L.geoJSON(l.feature));
    }
  });
  var bounds = focus.getBounds();
  if (!window.fieldsyncMap.config().tiles) {
    // No base map: the area's outline is the only thing to read the record's place against.
    layer.eachLayer(function (l) {
      if (l.feature.properties.kind === "area" && l.getBounds) {
        bounds = bounds.isValid() ? bounds.extend(l.getBounds()) : l.getBounds();
      }
    });
  }
  if (bounds.isValid()) {
    map.fitBounds(bounds.pad(0.2), { maxZoom: 17 });
  } else {
    var home = window.fieldsyncMap.config().home || { lat: 53.52, lng: -2.58, zoom: 12 };
    map.setView([home.lat, home.lng], home.zoom);
  }
  element.setAttribute("data-ready", "true");
})();
