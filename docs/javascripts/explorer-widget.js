/* Attention explorer: plain JavaScript, no framework, nothing loaded from elsewhere.
   explorer.js, on every page, loads this file only on a page that has the widget.

   Any page can embed it with
     <div class="attention-explorer" data-src="../assets/explorer/attention.json"></div>
   where data-src is the JSON that snippets/explorer.py writes at build time, relative
   to the page. Optional attributes: data-sentence (a sentence id: show only that
   sentence), data-model ("smollm2": open on the trained model), data-layer (a
   SmolLM2 layer number), data-head (a head name, such as "head 2"), data-token (the
   token selected first, by its text).

   The widget shows the tokens as a radio group (Tab reaches it, arrow keys, Home and
   End move through it; hovering or focusing a token selects it), "Model",
   "Sentence", "Layer" and "Head" selects, and for the selected token its weight over
   every token as a bar and a number, with a polite live region that reads the row
   out. Beside the bars, a heatmap draws the head's whole T x T matrix on a canvas;
   pointing at a cell selects its row and reads its weight.

   SmolLM2's weights (30 layers x 9 heads) are in one file per sentence that is
   fetched only when a reader picks the model. Each head there is packed: row i's
   first i + 1 weights (the keys a causal query i may see), as whole numbers of
   10^-digits, row after row.

   Material's instant navigation swaps page contents without reloading, so
   explorer.js calls init() on every emission of Material's document$ observable,
   and each container is set up once. */
(function () {
  "use strict";

  if (window.attentionExplorer) return; // the script itself ran twice

  var READY = "data-explorer-ready";
  var LOADING = "data-explorer-loading";
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

  // How a screen reader should say a token: SmolLM2's tokens show a space as ␣.
  function spoken(token) {
    return token.replace(/\u2423/g, " ").trim() || token;
  }

  // The options of a select, rebuilt only when they change (a select in use keeps
  // its options), and which one is selected.
  function setOptions(select, labels, selected) {
    var now = Array.prototype.map.call(select.options, function (o) { return o.text; });
    if (now.join("\n") !== labels.join("\n")) {
      select.textContent = "";
      labels.forEach(function (text, i) {
        select.appendChild(el("option", { value: String(i) }, text));
      });
    }
    select.value = String(selected);
  }

  function labelledSelect(id, label) {
    var wrap = el("div", { class: "attention-explorer__control" });
    wrap.appendChild(el("label", { for: id }, label));
    var select = el("select", { id: id });
    wrap.appendChild(select);
    return { wrap: wrap, select: select };
  }

  function indexBy(list, key, wanted) {
    for (var i = 0; i < list.length; i++) if (list[i][key] === wanted) return i;
    return -1;
  }

  function unpack(flat, T, digits) {
    var scale = Math.pow(10, digits);
    var rows = [];
    var n = 0;
    for (var i = 0; i < T; i++) {
      var row = [];
      for (var j = 0; j < T; j++) row.push(j <= i ? flat[n + j] / scale : 0);
      n += i + 1;
      rows.push(row);
    }
    return rows;
  }

  // "rgb(1, 2, 3)" or "rgba(1, 2, 3, 0.5)" -> [r, g, b, a]
  function rgba(css) {
    var v = (css.match(/[\d.]+/g) || [0, 0, 0]).map(Number);
    return [v[0], v[1], v[2], v.length > 3 ? v[3] : 1];
  }

  function mix(a, b, w) {
    return [0, 1, 2].map(function (i) { return Math.round(a[i] + w * (b[i] - a[i])); });
  }

  function css(rgb) {
    return "rgb(" + rgb.join(",") + ")";
  }

  function build(root, data, base) {
    var uid = "attention-explorer-" + ++count;
    var models = [{ key: "toy", name: "Hand-built and untrained heads",
                    sentences: data.sentences }];
    if (data.smollm2) {
      models.push({ key: "smollm2", name: data.smollm2.name + " (trained)",
                    sentences: data.smollm2.sentences });
    }
    var fixed = root.getAttribute("data-sentence");
    if (fixed !== null) {
      models.forEach(function (m) {
        m.sentences = m.sentences.filter(function (s) { return s.id === fixed; });
      });
      models = models.filter(function (m) { return m.sentences.length > 0; });
      if (!models.length) throw new Error('no sentence with id "' + fixed + '"');
    }
    var state = { m: 0, s: 0, layer: 0, h: 0, t: 0, k: null };
    var wanted = {
      head: root.getAttribute("data-head"),
      token: root.getAttribute("data-token"),
      layer: root.getAttribute("data-layer"),
    };
    var wantedModel = root.getAttribute("data-model");
    if (wantedModel !== null) state.m = Math.max(0, indexBy(models, "key", wantedModel));
    var files = {}; // URL -> a loaded SmolLM2 sentence file
    var view = null; // what is shown: tokens, weights, head name, note, causal
    var shownTokens = null;
    var pendingToken = wanted.token; // the token asked for, until its sentence is here

    root.textContent = "";
    var controls = el("div", { class: "attention-explorer__controls" });
    var modelSelect = null;
    if (models.length > 1) {
      var mc = labelledSelect(uid + "-model", "Model");
      modelSelect = mc.select;
      setOptions(modelSelect, models.map(function (m) { return m.name; }), state.m);
      controls.appendChild(mc.wrap);
    }
    var sc = labelledSelect(uid + "-sentence", "Sentence");
    var sentenceSelect = sc.select;
    var title = el("p", { class: "attention-explorer__title" });
    controls.appendChild(fixed === null ? sc.wrap : title);
    var lc = labelledSelect(uid + "-layer", "Layer");
    var layerSelect = lc.select;
    controls.appendChild(lc.wrap);
    var hc = labelledSelect(uid + "-head", "Head");
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

    var views = el("div", { class: "attention-explorer__views" });
    var bars = el("div", { class: "attention-explorer__bars" });
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
    bars.appendChild(table);
    views.appendChild(bars);

    var matrix = el("figure", { class: "attention-explorer__matrix" });
    var canvas = el("canvas", { role: "img", width: "288", height: "288" });
    matrix.appendChild(canvas);
    var legend = el("figcaption", { class: "attention-explorer__legend" });
    legend.appendChild(el("span", { class: "attention-explorer__scale",
                                    "aria-hidden": "true" }));
    legend.appendChild(el("span", {},
      "The whole matrix: row i is what token i attends to, column j is token j; " +
      "colour from 0 (background) to 1 (full). The outlined row is the one in the " +
      "table. Hatched cells are masked: a causal head cannot see later tokens."));
    matrix.appendChild(legend);
    var readout = el("p", { class: "attention-explorer__readout" });
    matrix.appendChild(readout);
    views.appendChild(matrix);
    root.appendChild(views);

    var live = el("p", {
      class: "attention-explorer__live", "aria-live": "polite", role: "status",
    });
    root.appendChild(live);

    var buttons = [];
    var size = 0; // the canvas's width in CSS pixels, from a ResizeObserver: until it
    // reports, after the browser's own layout, nothing is drawn, so setting the
    // widget up never makes the browser style and lay out the page early
    var palette = null; // the scheme's colours, read again when the scheme changes

    function model() { return models[state.m]; }
    function sentence() { return model().sentences[state.s]; }

    // What to show now; null while a SmolLM2 file is on its way.
    function current() {
      var s = sentence();
      if (model().key === "toy") {
        var h = s.heads[state.h];
        return { tokens: s.tokens, weights: h.weights, name: h.name, note: h.note || "",
                 causal: false };
      }
      var url = new URL(s.src, base).href;
      var file = files[url];
      if (!file) {
        fetchFile(url);
        return null;
      }
      state.layer = Math.min(state.layer, file.layers - 1);
      state.h = Math.min(state.h, file.heads - 1);
      var group = file.heads / file.kv_heads;
      var kv = Math.floor(state.h / group);
      var shared = [];
      for (var i = kv * group; i < (kv + 1) * group; i++) shared.push(i);
      return {
        tokens: file.tokens,
        weights: unpack(file.weights[state.layer][state.h], file.tokens.length,
                        file.digits),
        name: "layer " + state.layer + " head " + state.h,
        note: "Layer " + state.layer + ", head " + state.h + " of " + data.smollm2.name +
          ", a trained model. It is causal: a token sees only itself and the tokens " +
          "before it. Heads " + shared.join(", ") + " share key/value head " + kv +
          " (grouped-query attention).",
        causal: true,
      };
    }

    function fetchFile(url) {
      root.setAttribute(LOADING, "true");
      views.setAttribute("aria-busy", "true");
      note.textContent = "Loading " + data.smollm2.name + "'s weights for this " +
        "sentence\u2026";
      load(url).then(function (file) {
        files[url] = file;
        show();
      }).catch(function (err) {
        root.removeAttribute(LOADING);
        views.removeAttribute("aria-busy");
        note.textContent = "The weights could not be loaded: " + err.message;
        console.error("attention explorer:", err);
      });
    }

    function renderControls() {
      var m = model();
      if (modelSelect) modelSelect.value = String(state.m);
      setOptions(sentenceSelect, m.sentences.map(function (s) { return s.title; }),
                 state.s);
      title.textContent = sentence().title;
      var file = m.key === "smollm2" ? files[new URL(sentence().src, base).href] : null;
      lc.wrap.hidden = m.key !== "smollm2";
      var heads;
      if (m.key === "toy") {
        heads = sentence().heads.map(function (h) { return h.name; });
      } else if (file) {
        var layers = [];
        for (var l = 0; l < file.layers; l++) layers.push("layer " + l);
        setOptions(layerSelect, layers, state.layer);
        heads = [];
        for (var h = 0; h < file.heads; h++) heads.push("head " + h);
      } else {
        heads = null; // filled in when the file arrives
      }
      layerSelect.disabled = headSelect.disabled = heads === null;
      if (heads) setOptions(headSelect, heads, state.h);
    }

    function renderTokens(tokens) {
      tokenBox.textContent = "";
      buttons = tokens.map(function (token, i) {
        var b = el("button", {
          type: "button", role: "radio", class: "attention-explorer__token",
          "data-index": String(i), "aria-label": spoken(token) + " (token " + (i + 1) + ")",
        }, token);
        b.addEventListener("mouseenter", function () { select(i); });
        b.addEventListener("focus", function () { select(i); });
        b.addEventListener("click", function () { select(i); });
        b.addEventListener("keydown", function (event) { onKey(event, i); });
        tokenBox.appendChild(b);
        return b;
      });
      body.textContent = "";
      tokens.forEach(function (token, j) {
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
      shownTokens = tokens.join("\n");
    }

    // Everything that depends on the model, sentence, layer or head.
    function show() {
      var next = current();
      renderControls();
      if (!next) return; // the file is on its way: show() runs again when it is here
      view = next;
      root.removeAttribute(LOADING);
      views.removeAttribute("aria-busy");
      if (pendingToken !== null) {
        state.t = Math.max(0, view.tokens.map(spoken).indexOf(pendingToken));
        pendingToken = null;
      }
      if (view.tokens.join("\n") !== shownTokens) {
        state.t = Math.min(state.t, view.tokens.length - 1);
        renderTokens(view.tokens);
      }
      state.k = null;
      note.textContent = view.note;
      update();
    }

    // Everything that depends on the selected token (and the cell pointed at).
    function update() {
      var row = view.weights[state.t];
      var query = view.tokens[state.t];
      buttons.forEach(function (b, i) {
        var on = i === state.t;
        b.setAttribute("aria-checked", on ? "true" : "false");
        b.tabIndex = on ? 0 : -1;
      });
      caption.textContent = "What \u201c" + query + "\u201d (token " + (state.t + 1) +
        ") attends to, " + view.name + "; the weights sum to 1.";
      var rows = body.querySelectorAll("tr");
      var parts = [];
      row.forEach(function (w, j) {
        rows[j].querySelector(".attention-explorer__bar").style.width = (100 * w) + "%";
        rows[j].querySelector(".attention-explorer__value").textContent = fmt(w);
        rows[j].classList.toggle("attention-explorer__row--query", j === state.t);
        rows[j].classList.toggle("attention-explorer__row--key", j === state.k);
        parts.push(spoken(view.tokens[j]) + " " + fmt(w));
      });
      live.textContent = spoken(query) + " attends to: " + parts.join(", ");
      if (state.k === null) {
        readout.textContent = "Point at a cell to read its weight.";
      } else if (view.causal && state.k > state.t) {
        readout.textContent = "\u201c" + query + "\u201d cannot see \u201c" +
          view.tokens[state.k] + "\u201d: it comes later (masked).";
      } else {
        readout.textContent = "\u201c" + query + "\u201d \u2192 \u201c" +
          view.tokens[state.k] + "\u201d: " + fmt(row[state.k]);
      }
      canvas.setAttribute("aria-label", "Heatmap of all " + view.tokens.length + " \u00d7 " +
        view.tokens.length + " weights of " + view.name + "; the outlined row is " +
        "token " + (state.t + 1) + "'s, whose weights the table lists.");
      if (size) draw();
      root.setAttribute("data-token-index", String(state.t));
      root.setAttribute("data-head-index", String(state.h));
      root.setAttribute("data-layer-index", String(state.layer));
      root.setAttribute("data-model-key", model().key);
      root.setAttribute("data-sentence-id", sentence().id);
    }

    // The colours of the page's scheme, read from computed styles (no layout).
    function colours() {
      var bg = rgba(getComputedStyle(root).backgroundColor);
      var fg = rgba(getComputedStyle(root).color);
      var bar = body.querySelector(".attention-explorer__bar");
      var accent = rgba(getComputedStyle(bar).backgroundColor);
      return { bg: bg, fg: mix(bg, fg, fg[3]), accent: accent };
    }

    function draw() {
      var ratio = window.devicePixelRatio || 1;
      var px = Math.max(1, Math.round(size * ratio));
      if (canvas.width !== px) {
        canvas.width = px;
        canvas.height = px;
      }
      var ctx = canvas.getContext("2d");
      var c = palette || (palette = colours());
      canvas.setAttribute("data-drawn", view.name); // for tests: what it shows
      var T = view.tokens.length;
      var edge = function (i) { return Math.round(i * px / T); };
      ctx.fillStyle = css(c.bg);
      ctx.fillRect(0, 0, px, px);
      for (var i = 0; i < T; i++) {
        for (var j = 0; j < T; j++) {
          if (view.causal && j > i) continue; // masked: hatched below
          ctx.fillStyle = css(mix(c.bg, c.accent, view.weights[i][j]));
          ctx.fillRect(edge(j), edge(i), edge(j + 1) - edge(j), edge(i + 1) - edge(i));
        }
      }
      if (view.causal) {
        ctx.save();
        ctx.beginPath();
        for (i = 0; i < T - 1; i++) {
          ctx.rect(edge(i + 1), edge(i), px - edge(i + 1), edge(i + 1) - edge(i));
        }
        ctx.clip();
        ctx.strokeStyle = css(mix(c.bg, c.fg, 0.45));
        ctx.lineWidth = Math.max(1, Math.round(ratio));
        var step = Math.max(4, Math.round(6 * ratio));
        ctx.beginPath();
        for (var d = -px; d < px; d += step) {
          ctx.moveTo(d, px);
          ctx.lineTo(d + px, 0);
        }
        ctx.stroke();
        ctx.restore();
      }
      var line = Math.max(2, Math.round(2 * ratio));
      ctx.lineWidth = line;
      ctx.strokeStyle = css(c.fg);
      ctx.strokeRect(line / 2, edge(state.t) + line / 2, px - line,
                     edge(state.t + 1) - edge(state.t) - line);
      if (state.k !== null) {
        ctx.strokeRect(edge(state.k) + line / 2, edge(state.t) + line / 2,
                       edge(state.k + 1) - edge(state.k) - line,
                       edge(state.t + 1) - edge(state.t) - line);
      }
    }

    function select(i) {
      if (i === state.t) return; // already shown: do not announce it again
      state.t = i;
      update();
    }

    function pointAt(event) {
      if (!view || !size) return;
      var T = view.tokens.length;
      var i = Math.min(T - 1, Math.max(0, Math.floor(event.offsetY / size * T)));
      var j = Math.min(T - 1, Math.max(0, Math.floor(event.offsetX / size * T)));
      if (i === state.t && j === state.k) return;
      state.t = i;
      state.k = j;
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

    canvas.addEventListener("mousemove", pointAt);
    canvas.addEventListener("click", pointAt);
    canvas.addEventListener("mouseleave", function () {
      if (!view || state.k === null) return;
      state.k = null;
      update();
    });
    new ResizeObserver(function (entries) {
      var width = entries[0].contentRect.width;
      if (width > 0 && width !== size) {
        size = width;
        if (view) draw();
      }
    }).observe(canvas);
    // Material switches the colour scheme on <body> without reloading: redraw.
    var scheme = new MutationObserver(function () {
      palette = null;
      if (!root.isConnected) scheme.disconnect(); // the page was swapped out
      else if (view && size) draw();
    });
    scheme.observe(document.body, {
      attributes: true, attributeFilter: ["data-md-color-scheme"],
    });

    if (modelSelect) {
      modelSelect.addEventListener("change", function () {
        var id = sentence().id;
        state.m = Number(modelSelect.value);
        state.s = Math.max(0, indexBy(model().sentences, "id", id));
        state.h = 0;
        state.layer = 0;
        show();
      });
    }
    sentenceSelect.addEventListener("change", function () {
      state.s = Number(sentenceSelect.value);
      show();
    });
    layerSelect.addEventListener("change", function () {
      state.layer = Number(layerSelect.value);
      show();
    });
    headSelect.addEventListener("change", function () {
      state.h = Number(headSelect.value);
      show();
    });

    // The first view: the head and layer the element asks for (the token is picked
    // by show(), once the sentence's tokens are here).
    if (model().key === "toy" && wanted.head !== null) {
      state.h = Math.max(0, indexBy(sentence().heads, "name", wanted.head));
    } else if (wanted.head !== null) {
      state.h = Math.max(0, parseInt(wanted.head.replace(/^head /, ""), 10) || 0);
    }
    if (model().key === "smollm2" && wanted.layer !== null) {
      state.layer = Math.max(0, parseInt(wanted.layer, 10) || 0);
    }
    show();
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
      build(root, data, url);
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
  init(); // the page that made explorer.js load this file
})();
