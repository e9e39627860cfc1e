/* On every page: a region that scrolls sideways on this screen (a wide formula, or
   a table in Material's scroll wrapper) is made focusable, so that a keyboard can
   scroll it too (WCAG 2.1.1; axe-core's scrollable-region-focusable). Only those
   that overflow get a tab stop, so it is redone when the window changes size. */
(function () {
  "use strict";

  var SCROLLERS = "math[display=block], .md-typeset__scrollwrap";

  function mark() {
    document.querySelectorAll(SCROLLERS).forEach(function (el) {
      if (el.scrollWidth > el.clientWidth + 1) {
        el.setAttribute("tabindex", "0");
        if (el.tagName.toLowerCase() !== "math") {
          el.setAttribute("role", "region");
          el.setAttribute("aria-label", "Table (scrolls sideways)");
        }
      } else if (el.getAttribute("tabindex") === "0") {
        el.removeAttribute("tabindex");
        el.removeAttribute("role");
        el.removeAttribute("aria-label");
      }
    });
  }

  // After Material has set the page up (it wraps tables when it mounts them).
  function later() { window.requestAnimationFrame(function () { setTimeout(mark, 0); }); }

  if (typeof window.document$ !== "undefined" && window.document$.subscribe) {
    window.document$.subscribe(later); // first load and every instant navigation
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", later);
  } else {
    later();
  }
  // What overflows changes with the width of the window and once a web font (the
  // math font) has replaced the fallback it was drawn in.
  var pending;
  function soon() {
    clearTimeout(pending);
    pending = setTimeout(mark, 150);
  }
  window.addEventListener("resize", soon);
  window.addEventListener("load", later);
  if (document.fonts && document.fonts.addEventListener) {
    document.fonts.addEventListener("loadingdone", later);
  }
})();
