// tally: counts this page once per view (README: "Count your pages").
// Page HTML can shadow document's properties and make window's (by id or
// name): the DOM is read through prototypes; the counted mark is a symbol.
(function (d, w, O) {
  function prop(p, name) {
    return O.getOwnPropertyDescriptor(p, name);
  }
  var D = Document.prototype, attr = Element.prototype.getAttribute,
    once = Symbol.for("tally"), me, src, site, names, query = [], ref, width,
    body;
  try { // the src getter throws unless me is a script element
    me = prop(D, "currentScript").get.call(d);
    src = new URL(prop(HTMLScriptElement.prototype, "src").get.call(me));
  } catch (e) { return; }
  site = attr.call(me, "data-site");
  if (!site || src.pathname != "/count.js" || !w.fetch || w[once]) return;
  w[once] = 1; // included twice: one count
  // and a campaign's (counted; not in the page's name unless kept)
  names = (attr.call(me, "data-params") || "").split(/[\s,]+/)
    .concat(["utm_source", "utm_medium", "utm_campaign", "ref"]);
  location.search.slice(1).split("&").forEach(function (pair) {
    var k = pair.split("=")[0];
    try { k = decodeURIComponent(k); } catch (e) {}
    if (k && names.indexOf(k) >= 0) query.push(pair);
  });
  query = query.join("&");
  try { // the referrer and the screen's width
    ref = prop(D, "referrer").get.call(d);
    if (ref.length > 2048) ref = new URL(ref).origin;
    width = prop(Screen.prototype, "width").get.call(w.screen);
  } catch (e) {}
  body = { page: location.pathname + (query && "?" + query) };
  if (ref) body.referrer = ref;
  if (width >= 1 && width <= 100000) body.screen = Math.round(width);
  fetch(src.origin + "/api/v1/sites/" + encodeURIComponent(site) + "/hits", {
    method: "POST",
    credentials: "omit",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body)
  }).then(function (r) {
    return r.ok && r.json();
  }).then(function (hit) {
    function fill() {
      D.querySelectorAll.call(d, "[data-tally-count]").forEach(function (e) {
        var n = attr.call(e, "data-tally-count") == "site" ? hit.count
          : hit.page != "(other)" && hit.page_count; // (other): overflow
        if (typeof n == "number")
          prop(Node.prototype, "textContent").set.call(e, n);
      });
    }
    if (!hit) return;
    if (prop(D, "readyState").get.call(d) != "loading") fill();
    else EventTarget.prototype.addEventListener.call(d, "DOMContentLoaded",
      fill);
  }).catch(function () {});
})(document, window, Object);
