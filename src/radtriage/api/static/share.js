// The share page: the key from the link's fragment into the open form (never into a URL), and the viewer:
// a series' frames rendered by the server as PNG, scrolled by slider, buttons, arrow keys, wheel or swipe.
(function () {
  "use strict";
  var form = document.getElementById("open-form");
  if (form) {
    // after a wrong passcode the page's address has no fragment: the key is kept for this tab only
    var store = "share-key-" + form.dataset.share;
    var key = decodeURIComponent((location.hash || "").slice(1)) || sessionStorage.getItem(store) || "";
    if (key) sessionStorage.setItem(store, key);
    document.getElementById("key").value = key;
    // the lang switch keeps the fragment, so the key is not lost
    var sw = document.getElementById("lang-switch");
    if (sw && key) sw.href = sw.getAttribute("href") + "#" + key;
    return;
  }
  var viewer = document.getElementById("viewer");
  if (!viewer) return;
  var share = viewer.dataset.share;
  var series = JSON.parse(document.getElementById("series-data").textContent);
  var img = document.getElementById("frame"), slider = document.getElementById("slider");
  var select = document.getElementById("series"), position = document.getElementById("position");
  var state = { series: 0, index: 0, preset: "auto", zoom: 1 };

  function images() { return series[state.series] ? series[state.series].images : []; }
  function show() {
    var list = images();
    if (!list.length) return;
    state.index = Math.max(0, Math.min(list.length - 1, state.index));
    var item = list[state.index];
    img.src = "/s/" + share + "/frames/" + item[0] + "/" + item[1] + ".png?w=" + state.preset;
    slider.max = String(list.length - 1);
    slider.value = String(state.index);
    position.textContent = (state.index + 1) + " / " + list.length;
    img.dataset.index = String(state.index);
  }
  function step(d) { state.index += d; show(); }
  select.addEventListener("change", function () { state.series = Number(select.value); state.index = 0; show(); });
  slider.addEventListener("input", function () { state.index = Number(slider.value); show(); });
  document.getElementById("prev").addEventListener("click", function () { step(-1); });
  document.getElementById("next").addEventListener("click", function () { step(1); });
  document.getElementById("zoom-in").addEventListener("click", function () { zoom(1.25); });
  document.getElementById("zoom-out").addEventListener("click", function () { zoom(0.8); });
  function zoom(f) {
    state.zoom = Math.max(1, Math.min(6, state.zoom * f));
    img.style.width = (100 * state.zoom) + "%";
  }
  document.querySelectorAll(".preset").forEach(function (b) {
    b.addEventListener("click", function () {
      state.preset = b.dataset.preset;
      document.querySelectorAll(".preset").forEach(function (o) { o.setAttribute("aria-pressed", String(o === b)); });
      show();
    });
  });
  document.getElementById("frame-box").addEventListener("wheel", function (e) {
    e.preventDefault(); step(e.deltaY > 0 ? 1 : -1);
  }, { passive: false });
  var touchY = null;
  img.addEventListener("touchstart", function (e) { if (e.touches.length === 1) touchY = e.touches[0].clientY; });
  img.addEventListener("touchmove", function (e) {
    if (touchY === null || e.touches.length !== 1 || state.zoom > 1) return;
    var dy = e.touches[0].clientY - touchY;
    if (Math.abs(dy) > 12) { step(dy < 0 ? 1 : -1); touchY = e.touches[0].clientY; e.preventDefault(); }
  }, { passive: false });
  img.addEventListener("touchend", function () { touchY = null; });
  document.addEventListener("keydown", function (e) {
    if (e.key === "ArrowDown" || e.key === "ArrowRight") step(1);
    if (e.key === "ArrowUp" || e.key === "ArrowLeft") step(-1);
  });
  // start with the longest series (not a localizer), mid-series: the middle of a head CT says more than its top
  series.forEach(function (s, i) { if (s.images.length > images().length) state.series = i; });
  select.value = String(state.series);
  state.index = Math.floor(images().length / 2);
  show();
})();
