// tally dashboard: refreshes the charts every 30 seconds while the page is
// visible. The page works without it; with it, the new page's <main>
// replaces the old one, so nothing flickers and the scroll position stays.
(function () {
  "use strict";
  // Tells the stylesheet that scripts run (it then mentions the refresh).
  document.documentElement.classList.add("js");
  var seconds = Number(document.body.getAttribute("data-refresh")) || 0;
  if (seconds <= 0 || !window.fetch || !window.DOMParser) {
    return;
  }

  function refresh() {
    var main = document.getElementById("content");
    if (document.hidden || !main) {
      return;
    }
    fetch(window.location.href, {
      credentials: "same-origin",
      headers: { Accept: "text/html" },
    })
      .then(function (response) {
        // A redirect means the session ended: leave the page alone.
        if (!response.ok || response.redirected) {
          return null;
        }
        return response.text();
      })
      .then(function (text) {
        if (!text) {
          return;
        }
        var doc = new DOMParser().parseFromString(text, "text/html");
        var next = doc.getElementById("content");
        if (next) {
          main.replaceWith(document.importNode(next, true));
        }
      })
      .catch(function () {
        // Offline or the server is restarting: try again next time.
      });
  }

  window.setInterval(refresh, seconds * 1000);
})();
