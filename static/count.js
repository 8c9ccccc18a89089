// tally: counts this page once per view (README: "Count your pages").
(function (d, w) {
  var me = d.currentScript, site = me && me.dataset.site;
  if (!site || !w.fetch || w.__tally) return; // included twice: one count
  w.__tally = 1;
  fetch(new URL(me.src).origin + "/api/v1/sites/" +
    encodeURIComponent(site) + "/hits", {
    method: "POST",
    credentials: "omit",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ page: location.pathname + location.search })
  }).then(function (r) {
    return r.ok && r.json();
  }).then(function (hit) {
    function fill() {
      var els = d.querySelectorAll("[data-tally-count]"), i, n;
      for (i = 0; i < els.length; i++) {
        n = els[i].dataset.tallyCount == "site" ? hit.count
          : hit.page != "(other)" && hit.page_count; // (other): overflow
        if (typeof n == "number") els[i].textContent = n;
      }
    }
    if (!hit) return;
    if (d.readyState != "loading") fill();
    else d.addEventListener("DOMContentLoaded", fill);
  }).catch(function () {});
})(document, window);
