// pz.js: the shop page's side of the edge personalizer. No dependencies; served by the worker at /v1/pz.js.
//
//   <div data-pz-slot="hero">fallback content, kept if anything fails</div>
//   <div data-pz-slot="item" data-pz-item="p0042"></div>
//   <script src="https://shop.example/pz/v1/pz.js" defer></script>
//
// It fills every [data-pz-slot] placeholder from one /v1/page request, reports impressions (a fragment at
// least half visible for a second) and clicks, and sends what the page tells it with pz.track(type, fields).
// Events go with navigator.sendBeacon as text/plain (no CORS preflight). With consent denied (the pz_consent
// cookie, or the browser's Global Privacy Control) it sends nothing and sets no cookie; pz.consent("granted"
// | "denied") records the shopper's choice in the pz_consent cookie, which the worker reads as well.
(function () {
  "use strict";
  var w = window, d = document;
  if (w.pz && w.pz.version) return; // loaded twice: the first copy does the work
  var VERSION = "1";
  var SLOTS = ["hero", "home", "item", "cart", "recent", "again"];
  var script = d.currentScript;
  // The worker's base URL: data-pz-endpoint, else where this script came from (minus /v1/pz.js).
  var base = (script && script.getAttribute("data-pz-endpoint")) ||
    (script && script.src ? script.src.replace(/\/v1\/pz\.js(\?.*)?$/, "") : "");
  var queue = [], timer = 0, seen = typeof WeakSet === "function" ? new WeakSet() : null;

  function cookie(name) {
    var m = d.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return m ? m[1] : null;
  }
  // A pz_consent cookie is consent only when it says exactly "granted" (as the worker reads it).
  function denied() {
    var c = cookie("pz_consent");
    return navigator.globalPrivacyControl === true || (c !== null && c !== "granted");
  }
  function id() {
    if (w.crypto && crypto.randomUUID) return crypto.randomUUID();
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 12);
  }
  function flush() {
    clearTimeout(timer);
    timer = 0;
    if (!queue.length) return;
    var events = queue.splice(0, 50);
    var body = JSON.stringify({ events: events });
    var sent = false;
    try {
      sent = navigator.sendBeacon(base + "/v1/events", new Blob([body], { type: "text/plain;charset=UTF-8" }));
    } catch (e) { sent = false; }
    if (!sent && w.fetch) {
      fetch(base + "/v1/events", { method: "POST", body: body, credentials: "include", keepalive: true,
        headers: { "content-type": "text/plain;charset=UTF-8" } }).catch(function () {});
    }
    if (queue.length) flush();
  }
  // A preview (a signed pz_preview link the worker accepted): nothing is sent, so nothing is counted.
  function previewing() {
    return !!d.querySelector("[data-pz-preview]");
  }
  function send(type, fields, now) {
    if (denied() || previewing()) return false;
    var e = { id: id(), type: type, ts: Date.now() / 1000 };
    for (var k in fields) if (Object.prototype.hasOwnProperty.call(fields, k)) e[k] = fields[k];
    queue.push(e);
    if (now || queue.length >= 20) flush();
    else if (!timer) timer = setTimeout(flush, 1000);
    return true;
  }

  // Impressions: a fragment half visible for a second, once per fragment and page view.
  function impression(section) {
    var f = { slot: section.getAttribute("data-slot"), tier: section.getAttribute("data-tier"),
              generation: section.getAttribute("data-generation") };
    if (section.closest("[data-pz-holdout]")) f.holdout = true;  // the global holdout: measured, not personalized
    if (f.slot === "hero") {
      f.banner = section.getAttribute("data-banner");
      f.variant = section.getAttribute("data-variant");
    } else {
      f.items = [].map.call(section.querySelectorAll(".pz-item"), function (li) { return li.getAttribute("data-id"); });
    }
    send("impression", f);
  }
  var observer = w.IntersectionObserver ? new IntersectionObserver(function (entries) {
    entries.forEach(function (en) {
      var s = en.target;
      if (en.isIntersecting && en.intersectionRatio >= 0.5) {
        s._pzTimer = s._pzTimer || setTimeout(function () {
          observer.unobserve(s);
          impression(s);
        }, 1000);
      } else if (s._pzTimer) {
        clearTimeout(s._pzTimer);
        s._pzTimer = 0;
      }
    });
  }, { threshold: [0, 0.5] }) : null;
  function watch(root) {
    [].forEach.call(root.querySelectorAll("section[data-slot]"), function (s) {
      if (seen && seen.has(s)) return;
      if (seen) seen.add(s);
      if (observer) observer.observe(s);
    });
  }

  // Clicks on a card or on the banner, with the slot and the card's position (0 for the banner).
  d.addEventListener("click", function (ev) {
    var a = ev.target && ev.target.closest ? ev.target.closest("section[data-slot] a") : null;
    if (!a) return;
    var section = a.closest("section[data-slot]"), slot = section.getAttribute("data-slot");
    if (slot === "hero") {
      send("click", { slot: slot, item: section.getAttribute("data-banner"), position: 0 }, true);
      return;
    }
    var li = a.closest(".pz-item");
    if (!li) return;
    var items = section.querySelectorAll(".pz-item");
    send("click", { slot: slot, item: li.getAttribute("data-id"), position: [].indexOf.call(items, li) }, true);
  }, true);
  d.addEventListener("visibilitychange", function () { if (d.visibilityState === "hidden") flush(); });
  w.addEventListener("pagehide", flush);

  // The outcome, for the page's scripts and CSS: <html data-pz="filled|failed"> and a pz:filled|pz:failed event.
  function done(state, detail) {
    d.documentElement.setAttribute("data-pz", state);
    d.dispatchEvent(new CustomEvent("pz:" + state, { detail: detail }));
  }

  // One /v1/page request fills every placeholder; on any failure the placeholders keep their content.
  function fill() {
    var holders = [].slice.call(d.querySelectorAll("[data-pz-slot]")).filter(function (h) {
      return !h.hasAttribute("data-pz-filled") && SLOTS.indexOf(h.getAttribute("data-pz-slot")) >= 0;
    });
    watch(d);
    if (!holders.length) return Promise.resolve(false);
    var slots = [], item = null;
    holders.forEach(function (h) {
      var s = h.getAttribute("data-pz-slot");
      if (slots.indexOf(s) < 0) slots.push(s);
      if (s === "item" && !item) item = h.getAttribute("data-pz-item");
    });
    if (slots.indexOf("item") >= 0 && !item) slots.splice(slots.indexOf("item"), 1);
    var limit = script && script.getAttribute("data-pz-limit");
    var url = base + "/v1/page?format=html&slots=" + slots.join(",") +
      (item ? "&item=" + encodeURIComponent(item) : "") + (limit ? "&limit=" + encodeURIComponent(limit) : "");
    // The page's landing parameters, which campaigns may target.
    var here = new URLSearchParams(w.location.search);
    ["utm_campaign", "utm_source", "utm_medium"].forEach(function (k) {
      if (here.get(k)) url += "&" + k + "=" + encodeURIComponent(here.get(k));
    });
    if (here.get("pz_preview")) url += "&preview=" + encodeURIComponent(here.get("pz_preview"));
    return fetch(url, { credentials: "include" }).then(function (r) {
      if (!r.ok) throw new Error("pz: " + r.status);
      return r.text();
    }).then(function (html) {
      var t = d.createElement("template");
      t.innerHTML = html;
      var held = !!t.content.querySelector("[data-pz-holdout]");
      var shown = t.content.querySelector("[data-pz-preview]");
      holders.forEach(function (h) {
        var s = t.content.querySelector('section[data-slot="' + h.getAttribute("data-pz-slot") + '"]');
        if (shown) h.setAttribute("data-pz-preview", shown.getAttribute("data-pz-preview"));
        if (!s) return;
        s = s.cloneNode(true);
        h.replaceChildren(s);
        h.setAttribute("data-pz-filled", "");
        if (held) h.setAttribute("data-pz-holdout", "");
        heading(h, s);
      });
      controls(d);
      bar();
      watch(d);
      done("filled", { slots: slots });
      return true;
    }).catch(function (e) {
      if (w.console) console.warn(e);
      done("failed", {});
      return false;
    });
  }

  // A heading that fits the tier that answered: the placeholder's data-pz-title-<tier> (user, segment, popular,
  // default, item), else its data-pz-title. A placeholder with titles but none for this tier is hidden: a new
  // visitor's "recent" answered by best sellers is not "Recently viewed". Without titles, nothing is added.
  function heading(h, s) {
    var titled = [].some.call(h.attributes, function (a) { return a.name.indexOf("data-pz-title") === 0; });
    if (!titled) return;
    var text = h.getAttribute("data-pz-title-" + s.getAttribute("data-tier"));
    if (text === null) text = h.getAttribute("data-pz-title");
    if (!text) {
      h.hidden = true;
      return;
    }
    var el = d.createElement("h2");
    el.className = "pz-heading";
    el.textContent = text;
    h.insertBefore(el, s);
  }

  // Scroll buttons on each carousel for a mouse (a touch screen swipes the list itself, and CSS hides them
  // there); each is disabled at its end of the list.
  function controls(root) {
    [].forEach.call(root.querySelectorAll("section.pz-recs"), function (s) {
      var list = s.querySelector(".pz-items");
      if (!list || s.querySelector(".pz-nav")) return;
      var buttons = [-1, 1].map(function (way) {
        var b = d.createElement("button");
        b.type = "button";
        b.className = "pz-nav " + (way < 0 ? "pz-prev" : "pz-next");
        b.setAttribute("aria-label", way < 0 ? "Previous" : "Next");
        b.textContent = way < 0 ? "\u2039" : "\u203a";
        b.addEventListener("click", function () {
          list.scrollBy({ left: way * Math.max(list.clientWidth * 0.8, 100), behavior: "smooth" });
        });
        s.appendChild(b);
        return b;
      });
      function ends() {
        buttons[0].disabled = list.scrollLeft <= 1;
        buttons[1].disabled = list.scrollLeft >= list.scrollWidth - list.clientWidth - 1;
      }
      list.addEventListener("scroll", ends, { passive: true });
      if (w.ResizeObserver) new ResizeObserver(ends).observe(list);
      ends();
    });
  }

  // The preview's bar: which campaign the link shows, until when, and why each campaign did or did not match.
  function bar() {
    var el = d.querySelector("[data-pz-preview]");
    if (!el || d.querySelector(".pz-preview-bar")) return;
    var about;
    try { about = JSON.parse(el.getAttribute("data-pz-preview")); } catch (e) { return; }
    var box = d.createElement("aside"), head = d.createElement("details"), sum = d.createElement("summary");
    box.className = "pz-preview-bar";
    box.setAttribute("role", "status");
    sum.textContent = "Previewing campaign " + about.campaign + (about.variant ? ", variant " + about.variant : "") +
      (about.expires ? " (link valid until " + new Date(about.expires * 1000).toLocaleString() + ")" : "") +
      ": not counted";
    head.appendChild(sum);
    if (about.note) {
      var note = d.createElement("p");
      note.textContent = about.note;
      head.appendChild(note);
    }
    var list = d.createElement("ol");
    (about.trace || []).forEach(function (t) {
      var li = d.createElement("li");
      li.textContent = (t.matched ? "\u2713 " : "\u2717 ") + t.campaign + " (priority " + t.priority + "): " + t.why;
      list.appendChild(li);
    });
    head.appendChild(list);
    box.appendChild(head);
    d.body.appendChild(box);
  }

  w.pz = {
    version: VERSION,
    // pz.track("view", {item}); ("add_to_cart", {item, quantity}); ("remove_from_cart", {item});
    // ("purchase", {order, items: [{item, quantity, price: "12.50"}]}). False when consent forbids it.
    track: function (type, fields) { return send(type, fields || {}, type === "purchase"); },
    consent: function (choice) {
      if (choice !== "granted" && choice !== "denied") throw new Error('pz.consent: "granted" or "denied"');
      if (choice === "denied") queue.length = 0;
      d.cookie = "pz_consent=" + choice + "; Path=/; Max-Age=31536000; SameSite=Lax" +
        (location.protocol === "https:" ? "; Secure" : "");
    },
    refresh: fill,
    flush: flush,
  };
  function start() {
    bar();  // an injected page carries its preview already, and its carousels
    controls(d);
    fill();
  }
  if (d.readyState === "loading") d.addEventListener("DOMContentLoaded", start); else start();
})();
