// The Dose page is drawn by the server (charts as inline SVG, filters as a plain form): no live link.
"use strict";
(() => {
  const badge = document.getElementById("live");
  if (badge) { badge.textContent = "as of " + new Date().toLocaleTimeString() + " - reload for new examinations"; badge.className = "live"; }
})();
