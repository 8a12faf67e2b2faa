// Live parts of the dashboard: every element with data-live-src is fetched again every
// data-live-every milliseconds (while the tab is visible) and its content replaced with what
// the server renders; the server's template is the one that made the page. A 401 means the
// session ended: reload, which leads to the sign-in page. No library, no build step.
(function () {
  "use strict";
  function watch(el) {
    var every = parseInt(el.getAttribute("data-live-every"), 10) || 3000;
    var busy = false;
    function refresh() {
      if (busy || document.hidden) { return; }
      busy = true;
      fetch(el.getAttribute("data-live-src"), {headers: {"X-Live": "1", "Accept": "text/html"},
                                                credentials: "same-origin", cache: "no-store"})
        .then(function (response) {
          if (response.status === 401) { window.location.reload(); return null; }
          return response.ok ? response.text() : null;
        })
        .then(function (html) {
          if (html !== null && html !== undefined) { el.innerHTML = html; el.setAttribute("data-refreshed", Date.now()); }
        })
        .catch(function () { /* offline for a moment: the next round tries again */ })
        .then(function () { busy = false; });
    }
    window.setInterval(refresh, every);
    document.addEventListener("visibilitychange", refresh);
  }
  Array.prototype.forEach.call(document.querySelectorAll("[data-live-src]"), watch);
}());
