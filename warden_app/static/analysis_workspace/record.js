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
  if (group.getLayers().length) {
    map.fitBounds(group.getBounds(), { maxZoom: 16, padding: [20, 20] });
  }
})();
