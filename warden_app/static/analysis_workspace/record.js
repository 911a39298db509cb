/* A record's small map: its point (and an audit's route when it is open to the reader). */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("record-data").textContent);
  var map = fieldsyncMap.create(document.getElementById("record-map"));
  var group = L.featureGroup().addTo(map);
  if (data.route) {
    L.geoJSON(data.route, { style: { color: "#6f42c1", weight: 3 } }).addTo(group);
  }
  if (data.location) {
    L.geoJSON(data.location, {
      pointToLayer: function (f, latlng) {
        return L.circleMarker(latlng, { radius: 8, color: "#fff", weight: 2, fillColor: "#c2410c", fillOpacity: 1 });
      },
    }).addTo(group);
  }
  // No zoom animation: a point's map is drawn at once, at street level.
  var bounds = group.getLayers().length ? group.getBounds() : null;
  if (bounds && bounds.getNorthEast().equals(bounds.getSouthWest())) {
    map.setView(bounds.getCenter(), 16, { animate: false });
  } else if (bounds) {
    map.fitBounds(bounds, { maxZoom: 16, padding: [20, 20], animate: false });
  }
})();
