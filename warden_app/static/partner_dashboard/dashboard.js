/* The partner dashboard's two maps, drawn from the page's #partner-data (published figures,
   classes and outlines only: selectors.py). Withheld areas are filled with the page's hatch
   pattern, never with a colour of the scale. The two maps move together, so a place can be
   compared on both, and an area's name in the table zooms both to it. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("partner-data").textContent);
  var HATCH = "url(#withheld-hatch)";
  var WITHHELD = { color: "#57606a", weight: 1, fillColor: HATCH, fillOpacity: 1 };
  var maps = [];
  var areaBounds = {};

  function outlines(map, style, tip) {
    var layer = L.geoJSON(data.areas, { style: style });
    layer.eachLayer(function (item) {
      item.bindTooltip(tip(item.feature.properties), { sticky: true, className: "map-tip" });
      areaBounds[item.feature.properties.code] = item.getBounds();
    });
    layer.addTo(map);
    var bounds = layer.getBounds();
    if (bounds.isValid()) {
      map.fitBounds(bounds, { padding: [8, 8] });
    }
    return layer;
  }

  function countsMap(element) {
    var map = fieldsyncMap.create(element);
    outlines(map, function (feature) {
      var band = feature.properties.band;
      if (!band) { return WITHHELD; }
      return { color: "#1f2328", weight: 1, fillColor: data.bands[band], fillOpacity: 0.85 };
    }, function (p) {
      return p.name + ": " + (p.count === null ? "withheld" : p.count + " records");
    });
    return map;
  }

  function hotspotMap(element) {
    var map = fieldsyncMap.create(element);
    outlines(map, function (feature) {
      if (feature.properties.count === null) { return WITHHELD; }
      return { color: "#1f2328", weight: 1, fill: false };
    }, function (p) {
      if (p.count === null) { return p.name + ": withheld, not mapped"; }
      return p.name + ": " + (p.hotspot ? "highest class " + p.hotspot.toLowerCase() : "no hotspot shown");
    });
    L.geoJSON(data.hotspots, {
      interactive: false,
      style: function (feature) {
        return { stroke: false, fillColor: data.classes[feature.properties["class"]], fillOpacity: 0.8 };
      },
    }).addTo(map);
    return map;
  }

  // Moving one map moves the other; `following` stops the echo.
  function linked(a, b) {
    var following = false;
    function follow(from, to) {
      from.on("moveend", function () {
        if (following) { return; }
        following = true;
        to.setView(from.getCenter(), from.getZoom(), { animate: false });
        following = false;
      });
    }
    follow(a, b);
    follow(b, a);
  }

  maps.push(countsMap(document.getElementById("counts-map")));
  maps.push(hotspotMap(document.getElementById("hotspot-map")));
  linked(maps[0], maps[1]);

  document.querySelectorAll("[data-zoom-area]").forEach(function (button) {
    var bounds = areaBounds[button.getAttribute("data-zoom-area")];
    if (!bounds) { button.disabled = true; return; }
    button.addEventListener("click", function () {
      maps[0].fitBounds(bounds, { padding: [16, 16], animate: false });
      document.getElementById("figures").scrollIntoView();
    });
  });
})();
