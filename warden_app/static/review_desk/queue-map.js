/* The queue page's map: the filtered queue's records as points over the site's base map
   (site/map.js; none is fine: the areas' outlines are drawn), the supervisor's areas
   outlined. A point opens its record page, keeping the queue's filters so "next in queue"
   after a decision goes on with the same queue. The data are the page's own JSON. */
(function () {
  "use strict";
  var element = document.getElementById("queue-map");
  var dataNode = document.getElementById("queue-map-data");
  if (!element || !dataNode || typeof L === "undefined" || !window.fieldsyncMap) {
    return;
  }
  var data = JSON.parse(dataNode.textContent);
  var query = element.getAttribute("data-query");
  var map = window.fieldsyncMap.create(element, { noHome: true });
  // The same colours as the list's state badges (desk.css), darker for a point's edge.
  var stateColours = {
    submitted: "#9a6700", edited: "#9a6700", has_issues: "#b42318", approved: "#1a7f37", rejected: "#57606a",
  };
  var points = L.featureGroup();
  var areas = L.geoJSON(data, {
    filter: function (feature) { return feature.properties.kind === "area"; },
    style: function () { return { color: "#555", weight: 1.5, dashArray: "4 4", fillOpacity: 0.04 }; },
    interactive: false,
  }).addTo(map);
  L.geoJSON(data, {
    filter: function (feature) { return feature.properties.kind === "record"; },
    pointToLayer: function (feature, latlng) {
      var p = feature.properties;
      var colour = stateColours[p.review_state] || "#0b57d0";
      return L.circleMarker(latlng, {
        radius: 7, color: colour, weight: 2, fillColor: colour, fillOpacity: 0.55, className: "queue-point",
      });
    },
    onEachFeature: function (feature, layer) {
      var p = feature.properties;
      // An element holding text, never an HTML string: Leaflet would parse a string as HTML,
      // and titles and names come from handhelds.
      var tip = document.createElement("span");
      tip.textContent = p.type + ": " + p.summary + " \u00b7 " + p.author + " \u00b7 " + p.state + " \u00b7 " + p.when;
      layer.bindTooltip(tip);
      layer.on("click", function () {
        window.location.href = p.url + (query ? "?" + query : "");
      });
      points.addLayer(layer);
    },
  });
  points.addTo(map);
  var bounds = points.getBounds();
  if (!bounds.isValid()) {
    bounds = areas.getBounds();
  }
  if (bounds.isValid()) {
    map.fitBounds(bounds.pad(0.1), { maxZoom: 17 });
  } else {
    var home = window.fieldsyncMap.config().home || { lat: 53.52, lng: -2.58, zoom: 12 };
    map.setView([home.lat, home.lng], home.zoom);
  }
  element.setAttribute("data-points", String(points.getLayers().length));
  element.setAttribute("data-ready", "true");
})();
