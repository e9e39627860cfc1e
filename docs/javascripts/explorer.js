/* Attention explorer, the part on every page: it loads the widget itself
   (explorer-widget.js, beside this file) only on a page that has one, so that
   the other pages do not download it.

   Any page can embed the widget with
     <div class="attention-explorer" data-src="../assets/explorer/attention.json"></div>
   (explorer-widget.js lists the other attributes). Material's instant navigation
   swaps page contents without reloading, so this runs on every emission of
   Material's document$ observable. */
(function () {
  "use strict";

  if (window.__attentionExplorerLoaded) return; // the script itself ran twice
  window.__attentionExplorerLoaded = true;

  var widget = new URL("explorer-widget.js", document.currentScript.src).href;
  var loading = false;

  function init() {
    if (!document.querySelector("div.attention-explorer")) return;
    if (window.attentionExplorer) {
      window.attentionExplorer.init();
    } else if (!loading) {
      loading = true; // its own init() sets up the widgets there are by then
      var script = document.createElement("script");
      script.src = widget;
      script.onerror = function () {
        loading = false;
        console.error("attention explorer: could not load " + widget);
      };
      document.head.appendChild(script);
    }
  }

  if (typeof window.document$ !== "undefined" && window.document$.subscribe) {
    // Material for MkDocs: emits on the first load and after every instant navigation.
    window.document$.subscribe(function () { init(); });
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
