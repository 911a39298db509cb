// The admin's Leaflet widget measures its box when the page loads; on a phone Django's
// responsive admin narrows the form after that, so the map kept the wider size and clipped
// the area's outline on the right. Measure again once laid out, and show the whole outline.
window.addEventListener("map:init", function (event) {
  var map = event.detail.map;
  window.requestAnimationFrame(function () {
    map.invalidateSize();
    map.eachLayer(function (layer) {
      if (layer.getBounds && layer.getBounds().isValid && layer.getBounds().isValid()) {
        map.fitBounds(layer.getBounds());
      }
    });
  });
});
