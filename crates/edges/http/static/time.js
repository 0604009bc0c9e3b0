// Times in the reader's own time zone. The server writes every absolute time as
// <time datetime="RFC 3339">2026-12-04 14:10:00 UTC</time> (or "14:10 UTC" for a time of day),
// which is right without JavaScript; this rewrites that text to the reader's local time
// ("4 Dec 2026, 19:40 GMT+5:30") and keeps the server's UTC text in the title, shown on hover.
// Relative texts ("3 min ago", "1h 5m") are left as they are; one without a title gets the
// local time and the UTC one as its title. Runs on load and on every piece htmx swaps in.
(function () {
  "use strict";
  var FULL = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})? UTC$/;
  var CLOCK = /^\d{2}:\d{2} UTC$/;
  var dateAndTime = new Intl.DateTimeFormat(undefined, {
    day: "numeric", month: "short", year: "numeric",
    hour: "numeric", minute: "2-digit", timeZoneName: "short"
  });
  var timeOnly = new Intl.DateTimeFormat(undefined, {
    hour: "numeric", minute: "2-digit", timeZoneName: "short"
  });
  var dayOnly = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "2-digit", day: "2-digit" });

  function localize(el) {
    // Once only: the title must keep the server's text, never our own.
    if (el.hasAttribute("data-local")) return;
    var at = new Date(el.getAttribute("datetime"));
    if (isNaN(at.getTime())) return;
    var text = el.textContent.trim();
    if (FULL.test(text)) {
      el.title = text;
      el.textContent = dateAndTime.format(at);
    } else if (CLOCK.test(text)) {
      el.title = text;
      // A time of day on another day than the reader's today says which day.
      el.textContent = dayOnly.format(at) === dayOnly.format(new Date())
        ? timeOnly.format(at) : dateAndTime.format(at);
    } else if (!el.title) {
      // A relative text ("3 min ago") without a title: the moment itself on hover, local
      // first, then UTC. One with a title keeps the server's (its UTC moment).
      el.title = dateAndTime.format(at) + " (" + at.toISOString().slice(0, 16).replace("T", " ") + " UTC)";
    } else {
      // Relative, with the server's own title: left exactly as it came.
      return;
    }
    // Marks what was rewritten (and guards against a second pass).
    el.setAttribute("data-local", "");
  }

  function localizeIn(root) {
    if (!root || !root.querySelectorAll) return;
    if (root.matches && root.matches("time[datetime]")) localize(root);
    var times = root.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) localize(times[i]);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { localizeIn(document.body); });
  } else {
    localizeIn(document.body);
  }
  // htmx: new content (the request page's live part, the lists' rows) after every swap.
  document.addEventListener("htmx:load", function (e) { localizeIn(e.target); });
  document.addEventListener("htmx:afterSwap", function (e) { localizeIn(e.target); });
})();
