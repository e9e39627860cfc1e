/* Attention explorer: plain JavaScript, no framework, nothing loaded from elsewhere.

   Any page can embed it with
     <div class="attention-explorer" data-src="../assets/explorer/attention.json"></div>
   where data-src is the JSON that snippets/explorer.py writes at build time, relative
   to the page. Optional attributes: data-sentence (a sentence id: show only that
   sentence), data-head (a head name), data-token (the token selected first, by text).

   The widget shows the tokens as a radio group (Tab reaches it, arrow keys, Home and
   End move through it; hovering or focusing a token selects it), a "Head" select and,
   for the selected token, its weight over every token as a bar and a number, with a
   polite live region that reads the row out. Material's instant navigation swaps page
   contents without reloading, so initialisation runs on every emission of Material's
   document$ observable, and each container is set up once. */
(function () {
  "use strict";

  if (window.__attentionExplorerLoaded) return; // the script itself ran twice
  window.__attentionExplorerLoaded = true;

  var READY = "data-explorer-ready";
  var cache = {}; // absolute URL -> Promise of the parsed JSON
  var count = 0; // for unique element ids across every explorer on a page

  function load(url) {
    if (!cache[url]) {
      cache[url] = fetch(url, { credentials: "same-origin" }).then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status + " for " + url);
        return r.json();
      });
      cache[url].catch(function () {
        delete cache[url]; // a later page may try again
      });
    }
    return cache[url];
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      node.setAttribute(name, attrs[name]);
    });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmt(w) {
    return Number(w).toFixed(4);
  }

  function labelledSelect(id, label, options, selected) {
    var wrap = el("div", { class: "attention-explorer__control" });
    wrap.appendChild(el("label", { for: id }, label));
    var select = el("select", { id: id });
    options.forEach(function (text, i) {
      var option = el("option", { value: String(i) }, text);
      if (i === selected) option.selected = true;
      select.appendChild(option);
    });
    wrap.appendChild(select);
    return { wrap: wrap, select: select };
  }

  function indexBy(list, key, wanted) {
    for (var i = 0; i < list.length; i++) if (list[i][key] === wanted) return i;
    return -1;
  }

  function build(root, data) {
    var uid = "attention-explorer-" + ++count;
    var sentences = data.sentences;
    var fixed = root.getAttribute("data-sentence");
    if (fixed !== null) {
      var only = indexBy(sentences, "id", fixed);
      if (only < 0) throw new Error('no sentence with id "' + fixed + '"');
      sentences = [sentences[only]];
    }
    var state = { s: 0, h: 0, t: 0 };
    var wantedHead = root.getAttribute("data-head");
    if (wantedHead !== null) state.h = Math.max(0, indexBy(sentences[0].heads, "name", wantedHead));
    var wantedToken = root.getAttribute("data-token");
    if (wantedToken !== null) state.t = Math.max(0, sentences[0].tokens.indexOf(wantedToken));

    root.textContent = "";
    var controls = el("div", { class: "attention-explorer__controls" });
    var sentenceSelect = null;
    if (sentences.length > 1) {
      var sc = labelledSelect(uid + "-sentence", "Sentence",
        sentences.map(function (s) { return s.title; }), 0);
      sentenceSelect = sc.select;
      controls.appendChild(sc.wrap);
    } else {
      controls.appendChild(el("p", { class: "attention-explorer__title" }, sentences[0].title));
    }
    var hc = labelledSelect(uid + "-head", "Head",
      sentences[0].heads.map(function (h) { return h.name; }), state.h);
    var headSelect = hc.select;
    controls.appendChild(hc.wrap);
    root.appendChild(controls);

    var note = el("p", { class: "attention-explorer__note", id: uid + "-note" });
    root.appendChild(note);
    headSelect.setAttribute("aria-describedby", uid + "-note");

    var hint = el("p", { class: "attention-explorer__hint", id: uid + "-hint" },
      "Hover over a token, or Tab to the tokens and use the arrow keys, " +
      "to see what it attends to.");
    root.appendChild(hint);
    var tokenBox = el("div", {
      class: "attention-explorer__tokens", role: "radiogroup",
      "aria-label": "Query token", "aria-describedby": uid + "-hint",
    });
    root.appendChild(tokenBox);

    var table = el("table", { class: "attention-explorer__weights" });
    var caption = el("caption");
    table.appendChild(caption);
    var head = el("thead");
    var headRow = el("tr");
    headRow.appendChild(el("th", { scope: "col" }, "#"));
    headRow.appendChild(el("th", { scope: "col" }, "Key token"));
    headRow.appendChild(el("th", { scope: "col" }, "Weight"));
    head.appendChild(headRow);
    table.appendChild(head);
    var body = el("tbody");
    table.appendChild(body);
    root.appendChild(table);

    var live = el("p", {
      class: "attention-explorer__live", "aria-live": "polite", role: "status",
    });
    root.appendChild(live);

    var buttons = [];

    function sentence() { return sentences[state.s]; }

    function renderTokens() {
      tokenBox.textContent = "";
      buttons = sentence().tokens.map(function (token, i) {
        var b = el("button", {
          type: "button", role: "radio", class: "attention-explorer__token",
          "data-index": String(i), "aria-label": token + " (token " + (i + 1) + ")",
        }, token);
        b.addEventListener("mouseenter", function () { select(i); });
        b.addEventListener("focus", function () { select(i); });
        b.addEventListener("click", function () { select(i); });
        b.addEventListener("keydown", function (event) { onKey(event, i); });
        tokenBox.appendChild(b);
        return b;
      });
      body.textContent = "";
      sentence().tokens.forEach(function (token, j) {
        var row = el("tr", { "data-index": String(j) });
        row.appendChild(el("td", { class: "attention-explorer__pos" }, String(j + 1)));
        row.appendChild(el("td", { class: "attention-explorer__key" }, token));
        var cell = el("td");
        var box = el("div", { class: "attention-explorer__cell" });
        var track = el("span", { class: "attention-explorer__track", "aria-hidden": "true" });
        track.appendChild(el("span", { class: "attention-explorer__bar" }));
        box.appendChild(track);
        box.appendChild(el("span", { class: "attention-explorer__value" }));
        cell.appendChild(box);
        row.appendChild(cell);
        body.appendChild(row);
      });
    }

    function update() {
      var s = sentence();
      var headData = s.heads[state.h];
      var row = headData.weights[state.t];
      var query = s.tokens[state.t];
      note.textContent = headData.note || "";
      buttons.forEach(function (b, i) {
        var on = i === state.t;
        b.setAttribute("aria-checked", on ? "true" : "false");
        b.tabIndex = on ? 0 : -1;
      });
      caption.textContent = "What \u201c" + query + "\u201d (token " + (state.t + 1) +
        ") attends to, " + headData.name + "; the weights sum to 1.";
      var rows = body.querySelectorAll("tr");
      var parts = [];
      row.forEach(function (w, j) {
        rows[j].querySelector(".attention-explorer__bar").style.width = (100 * w) + "%";
        rows[j].querySelector(".attention-explorer__value").textContent = fmt(w);
        rows[j].classList.toggle("attention-explorer__row--query", j === state.t);
        parts.push(s.tokens[j] + " " + fmt(w));
      });
      live.textContent = query + " attends to: " + parts.join(", ");
      root.setAttribute("data-token-index", String(state.t));
      root.setAttribute("data-head-index", String(state.h));
      root.setAttribute("data-sentence-id", s.id);
    }

    function select(i) {
      if (i === state.t) return; // already shown: do not announce it again
      state.t = i;
      update();
    }

    function onKey(event, i) {
      var n = buttons.length;
      var next = null;
      if (event.key === "ArrowRight" || event.key === "ArrowDown") next = (i + 1) % n;
      else if (event.key === "ArrowLeft" || event.key === "ArrowUp") next = (i - 1 + n) % n;
      else if (event.key === "Home") next = 0;
      else if (event.key === "End") next = n - 1;
      if (next === null) return;
      event.preventDefault();
      buttons[next].focus(); // the focus handler selects it
    }

    headSelect.addEventListener("change", function () {
      state.h = Number(headSelect.value);
      update();
    });
    if (sentenceSelect) {
      sentenceSelect.addEventListener("change", function () {
        state.s = Number(sentenceSelect.value);
        state.t = Math.min(state.t, sentence().tokens.length - 1);
        renderTokens();
        update();
      });
    }

    renderTokens();
    update();
  }

  function setUp(root) {
    if (root.hasAttribute(READY)) return; // already set up (or being set up)
    root.setAttribute(READY, "loading");
    var src = root.getAttribute("data-src");
    var url;
    try {
      url = new URL(src, location.href).href;
    } catch (err) {
      url = null;
    }
    if (!src || !url) {
      fail(root, new Error("the explorer needs a data-src attribute"));
      return;
    }
    load(url).then(function (data) {
      build(root, data);
      root.setAttribute(READY, "true");
    }).catch(function (err) {
      fail(root, err);
    });
  }

  function fail(root, err) {
    root.setAttribute(READY, "error");
    root.textContent = "The attention explorer could not start: " + err.message;
    console.error("attention explorer:", err);
  }

  function init() {
    var roots = document.querySelectorAll("div.attention-explorer");
    for (var i = 0; i < roots.length; i++) setUp(roots[i]);
  }

  window.attentionExplorer = { init: init };

  if (typeof window.document$ !== "undefined" && window.document$.subscribe) {
    // Material for MkDocs: emits on the first load and after every instant navigation.
    window.document$.subscribe(function () { init(); });
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
