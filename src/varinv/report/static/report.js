/* varinv report page: selectors, recombination traversals and a small 3-D scatter on <canvas>.
   Written for this page; no library. Data: the JSON manifest in #varinv-manifest, and one lazily
   loaded script per (dataset, method, K) that calls VARINV.load(id, {zc: .., zs: ..}). */
(function () {
  "use strict";
  var MANIFEST = JSON.parse(document.getElementById("varinv-manifest").textContent);
  var DATA = {}, WAITING = {}, FAILED = {};

  window.VARINV = {
    load: function (gid, doc) {
      DATA[gid] = doc;
      (WAITING[gid] || []).forEach(function (f) { f(); });
      delete WAITING[gid];
    },
    manifest: MANIFEST
  };

  function need(gid, src, done, fail) {
    if (DATA[gid]) { done(); return; }
    if (FAILED[gid]) { fail(); return; }
    if (WAITING[gid]) { WAITING[gid].push(done); return; }
    WAITING[gid] = [done];
    var s = document.createElement("script");
    s.src = src;
    s.onerror = function () { FAILED[gid] = true; delete WAITING[gid]; fail(); };
    document.head.appendChild(s);
  }

  // ---- colours ---------------------------------------------------------------------------------
  var TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf"];
  var TAB20 = ["#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896",
    "#9467bd", "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7", "#bcbd22",
    "#dbdb8d", "#17becf", "#9edae5"];
  var PALE = { white: 1, snow: 1, ivory: 1, ghostwhite: 1, whitesmoke: 1, seashell: 1, mintcream: 1,
    azure: 1, aliceblue: 1, lavenderblush: 1, floralwhite: 1, linen: 1, honeydew: 1, oldlace: 1 };

  function palette(n) {
    if (n <= 10) return TAB10.slice(0, n);
    if (n <= 20) return TAB20.slice(0, n);
    var out = [];
    for (var i = 0; i < n; i++) out.push("hsl(" + Math.round(290 * i / (n - 1)) + ",72%," + (i % 2 ? 40 : 52) + "%)");
    return out;
  }
  // Styles named after colours (PhoneNums) are drawn in their own colour.
  function namedColours(names) {
    if (!names || !names.length || !window.CSS || !CSS.supports) return null;
    var seen = {};
    for (var i = 0; i < names.length; i++) {
      var n = String(names[i]).toLowerCase();
      if (!/^[a-z]+$/.test(n) || PALE[n] || seen[n] || !CSS.supports("color", n)) return null;
      seen[n] = 1;
    }
    return names.map(function (n) { return String(n).toLowerCase(); });
  }

  // ---- tooltip ---------------------------------------------------------------------------------
  var tip = document.getElementById("tooltip");
  function showTip(x, y, text) { tip.textContent = text; tip.style.left = (x + 12) + "px"; tip.style.top = (y + 12) + "px"; tip.hidden = false; }
  function hideTip() { tip.hidden = true; }

  // ---- 3-D scatter -----------------------------------------------------------------------------
  var CUBE = [[-1, -1, -1], [1, -1, -1], [1, 1, -1], [-1, 1, -1], [-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]];
  var EDGES = [[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 6], [6, 7], [7, 4], [0, 4], [1, 5], [2, 6], [3, 7]];

  function Scatter(canvas, section) {
    this.cv = canvas;
    this.sec = section;
    this.doc = null;
    this.proj = null;
    this.reset();
    var self = this, drag = null;
    canvas.addEventListener("pointerdown", function (e) {
      drag = { x: e.clientX, y: e.clientY };
      if (canvas.setPointerCapture) canvas.setPointerCapture(e.pointerId);
      canvas.classList.add("dragging");
      hideTip();
    });
    canvas.addEventListener("pointermove", function (e) {
      if (drag) {
        self.yaw += (e.clientX - drag.x) * 0.01;
        self.pitch = Math.max(-1.55, Math.min(1.55, self.pitch + (e.clientY - drag.y) * 0.01));
        drag = { x: e.clientX, y: e.clientY };
        self.draw();
      } else self.hover(e);
    });
    function end() { drag = null; canvas.classList.remove("dragging"); }
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
    canvas.addEventListener("pointerleave", hideTip);
    canvas.addEventListener("wheel", function (e) {
      if (!e.shiftKey) return;  // plain scrolling keeps scrolling the page
      e.preventDefault();
      self.zoom = Math.max(0.4, Math.min(8, self.zoom * Math.exp(-(e.deltaY || e.deltaX) * 0.0015)));
      self.draw();
    }, { passive: false });
    canvas.addEventListener("dblclick", function () { self.reset(); self.draw(); });
  }
  Scatter.prototype.reset = function () { this.yaw = 0.7; this.pitch = 0.35; this.zoom = 1; };
  Scatter.prototype.set = function (doc) { this.doc = doc; this.draw(); };
  Scatter.prototype.draw = function () {
    var cv = this.cv, dpr = window.devicePixelRatio || 1;
    var W = cv.clientWidth, H = cv.clientHeight;
    if (!W || !H) return;
    if (cv.width !== Math.round(W * dpr) || cv.height !== Math.round(H * dpr)) {
      cv.width = Math.round(W * dpr); cv.height = Math.round(H * dpr);
    }
    var ctx = cv.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    var d = this.doc;
    if (!d) return;
    var cy = Math.cos(this.yaw), sy = Math.sin(this.yaw), cp = Math.cos(this.pitch), sp = Math.sin(this.pitch);
    var R = Math.min(W, H) * 0.34 * this.zoom, X0 = W / 2, Y0 = H / 2;
    function project(x, y, z, out, o) {
      var x1 = cy * x + sy * z, z1 = -sy * x + cy * z;
      var y1 = cp * y - sp * z1, z2 = sp * y + cp * z1;
      var f = 3.5 / (3.5 + z2);
      out[o] = X0 + x1 * R * f; out[o + 1] = Y0 - y1 * R * f; out[o + 2] = z2; out[o + 3] = f;
    }
    // reference cube
    var c = new Float64Array(32);
    for (var i = 0; i < 8; i++) project(CUBE[i][0], CUBE[i][1], CUBE[i][2], c, 4 * i);
    ctx.strokeStyle = "#e4e8ef"; ctx.lineWidth = 1;
    ctx.beginPath();
    EDGES.forEach(function (e) { ctx.moveTo(c[4 * e[0]], c[4 * e[0] + 1]); ctx.lineTo(c[4 * e[1]], c[4 * e[1] + 1]); });
    ctx.stroke();
    // points, far to near
    var n = d.xyz.length / 3, P = new Float64Array(4 * n), q = 1 / 999;
    for (i = 0; i < n; i++) project(d.xyz[3 * i] * q, d.xyz[3 * i + 1] * q, d.xyz[3 * i + 2] * q, P, 4 * i);
    var order = new Array(n);
    for (i = 0; i < n; i++) order[i] = i;
    order.sort(function (a, b) { return P[4 * b + 2] - P[4 * a + 2]; });
    var mode = this.sec.colour, labels = mode === "style" ? d.style : d.content;
    var cols = mode === "style" ? this.sec.styleColours : this.sec.contentColours;
    for (var j = 0; j < n; j++) {
      i = order[j];
      ctx.fillStyle = cols[labels[i]] || "#999";
      ctx.beginPath();
      ctx.arc(P[4 * i], P[4 * i + 1], 2.6 * P[4 * i + 3], 0, 6.2832);
      ctx.fill();
    }
    // codebook atoms: black crosses with a white halo
    var na = (d.atoms || []).length / 3, A = new Float64Array(4 * na);
    for (i = 0; i < na; i++) project(d.atoms[3 * i] * q, d.atoms[3 * i + 1] * q, d.atoms[3 * i + 2] * q, A, 4 * i);
    for (var pass = 0; pass < 2; pass++) {
      ctx.strokeStyle = pass ? "#000" : "#fff";
      ctx.lineWidth = pass ? 2 : 4.5;
      ctx.beginPath();
      for (i = 0; i < na; i++) {
        var s = 5.5 * A[4 * i + 3], x = A[4 * i], y = A[4 * i + 1];
        ctx.moveTo(x - s, y - s); ctx.lineTo(x + s, y + s); ctx.moveTo(x - s, y + s); ctx.lineTo(x + s, y - s);
      }
      ctx.stroke();
    }
    this.proj = { P: P, A: A, n: n, na: na };
  };
  Scatter.prototype.hover = function (e) {
    var p = this.proj, d = this.doc;
    if (!p || !d) return;
    var r = this.cv.getBoundingClientRect(), mx = e.clientX - r.left, my = e.clientY - r.top;
    var best = -1, bd = 49, atom = false, i, dx, dy;
    for (i = 0; i < p.na; i++) {
      dx = p.A[4 * i] - mx; dy = p.A[4 * i + 1] - my;
      if (dx * dx + dy * dy < bd) { bd = dx * dx + dy * dy; best = i; atom = true; }
    }
    if (!atom) for (i = 0; i < p.n; i++) {
      dx = p.P[4 * i] - mx; dy = p.P[4 * i + 1] - my;
      if (dx * dx + dy * dy < bd) { bd = dx * dx + dy * dy; best = i; }
    }
    if (best < 0) { hideTip(); return; }
    var ds = this.sec.meta;
    if (atom) showTip(e.clientX, e.clientY, "codebook atom");
    else showTip(e.clientX, e.clientY, "content: " + (ds.content_names[d.content[best]] || d.content[best]) +
      " · style: " + (ds.style_names[d.style[best]] || d.style[best]));
  };

  // ---- helpers ---------------------------------------------------------------------------------
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text != null) e.textContent = text;
    return e;
  }
  function showMissing(box, text) {
    box.textContent = text;
    box.hidden = false;
  }
  function audioEl(src, label) {
    var box = el("div", { "class": "strip-audio" });
    if (label) box.appendChild(el("span", { "class": "label" }, label));
    box.appendChild(el("audio", { controls: "", preload: "metadata", src: src }));
    return box;
  }

  // ---- one dataset section -----------------------------------------------------------------------
  function Section(meta) {
    var root = document.getElementById(meta.id);
    this.meta = meta;
    this.root = root;
    this.k = String(meta.ks[0]);
    this.colour = "content";
    this.mode = "content";
    this.contentIndex = 0;
    this.styleIndex = 0;
    this.visible = false;
    this.contentColours = palette(meta.content_names.length || 1);
    this.styleColours = namedColours(meta.style_names) || palette(meta.style_names.length || 1);
    var self = this;
    this.scatters = [];
    root.querySelectorAll("canvas.scatter").forEach(function (cv) { self.scatters.push(new Scatter(cv, self)); });
    root.querySelectorAll('input[name="' + meta.id + '-k"]').forEach(function (r) {
      r.addEventListener("change", function () { if (r.checked) { self.k = r.value; self.update(); } });
    });
    root.querySelectorAll('input[name="' + meta.id + '-colour"]').forEach(function (r) {
      r.addEventListener("change", function () {
        if (r.checked) { self.colour = r.value; self.legend(); self.scatters.forEach(function (s) { s.draw(); }); }
      });
    });
    this.selContent = root.querySelector("select.fix-content");
    this.selStyle = root.querySelector("select.fix-style");
    this.selContent.addEventListener("change", function () {
      self.mode = "content"; self.contentIndex = +self.selContent.value; self.traverse();
    });
    this.selStyle.addEventListener("change", function () {
      self.mode = "style"; self.styleIndex = +self.selStyle.value; self.traverse();
    });
    this.legend();
    this.update();
  }
  Section.prototype.cell = function (method) { return this.meta.cells[method + "|" + this.k]; };
  Section.prototype.update = function () {
    var self = this;
    // confusion matrices
    this.root.querySelectorAll("table.views tr[data-method]").forEach(function (tr) {
      var m = tr.getAttribute("data-method"), cell = self.cell(m);
      var img = tr.querySelector("img.confusion"), box = tr.querySelector("td.cf .missing");
      var full = tr.querySelector("a.cf-full");
      var info = tr.querySelector(".seedinfo");
      info.textContent = cell ? ("seed " + cell.seed + (cell.seeds.length > 1 ? " (of " + cell.seeds.length + ")" : "")) : "";
      if (cell && cell.confusion) {
        if (img.getAttribute("src") !== cell.confusion) img.setAttribute("src", cell.confusion);
        img.hidden = false; box.hidden = true;
        if (full) { full.setAttribute("href", cell.confusion); full.hidden = false; }
      } else {
        img.hidden = true; img.removeAttribute("src");
        if (full) { full.hidden = true; full.removeAttribute("href"); }
        showMissing(box, !cell ? "not run for K=" + self.k : "no confusion matrix (run `varinv evaluate`)");
      }
    });
    this.root.querySelectorAll("table.metrics tr.k-row").forEach(function (tr) {
      tr.classList.toggle("current", tr.getAttribute("data-k") === self.k);
    });
    this.root.querySelectorAll("div.swaps[data-k]").forEach(function (d) {
      d.hidden = d.getAttribute("data-k") !== self.k;
    });
    this.latents();
    this.fillSelectors();
    this.traverse();
  };
  Section.prototype.latents = function () {
    var self = this;
    this.scatters.forEach(function (sc) {
      var cv = sc.cv, m = cv.getAttribute("data-method"), space = cv.getAttribute("data-space");
      var cell = self.cell(m), box = cv.parentNode.querySelector(".missing");
      function missing(text) { cv.hidden = true; sc.doc = null; showMissing(box, text); }
      if (!cell) return missing("not run for K=" + self.k);
      if (!cell.latents) return missing("no t-SNE view (run `varinv evaluate` with --tsne)");
      cv.hidden = false; box.hidden = true;
      if (!self.visible) return;
      var gid = self.meta.id + "|" + m + "|" + self.k, want = self.k;
      need(gid, cell.latents, function () {
        if (self.k !== want) return;
        var doc = DATA[gid][space];
        if (!doc) return missing("no " + (space === "zc" ? "content" : "style") + " coordinates in this run");
        sc.set(doc);
      }, function () { missing("latent coordinates could not be loaded"); });
    });
  };
  Section.prototype.legend = function () {
    var box = this.root.querySelector(".legend");
    box.textContent = "";
    var style = this.colour === "style";
    var names = style ? this.meta.style_names : this.meta.content_names;
    var cols = style ? this.styleColours : this.contentColours;
    names.forEach(function (n, i) {
      var item = el("span");
      var sw = el("span", { "class": "sw" });
      sw.style.background = cols[i] || "#999";
      item.appendChild(sw);
      item.appendChild(document.createTextNode(n));
      box.appendChild(item);
    });
    var x = el("span");
    x.appendChild(el("span", { "class": "x" }, "✕"));
    x.appendChild(document.createTextNode("codebook atom (z_c)"));
    box.appendChild(x);
  };
  Section.prototype.recombs = function () {
    var self = this, out = [];
    this.meta.methods.forEach(function (m) { var c = self.cell(m.key); if (c && c.recomb) out.push(c.recomb); });
    return out;
  };
  Section.prototype.fillSelectors = function () {
    var recs = this.recombs(), nAtoms = 0, styles = [];
    recs.forEach(function (r) {
      nAtoms = Math.max(nAtoms, r.atoms.length);
      if (r.styles.length > styles.length) styles = r.styles;
    });
    var sc = this.selContent, ss = this.selStyle;
    sc.textContent = ""; ss.textContent = "";
    for (var i = 0; i < nAtoms; i++) sc.appendChild(el("option", { value: String(i) }, "content index " + i));
    var self = this;
    styles.forEach(function (s) { ss.appendChild(el("option", { value: String(s.i) }, s.name)); });
    if (this.contentIndex >= nAtoms) this.contentIndex = 0;
    if (!styles.some(function (s) { return s.i === self.styleIndex; })) this.styleIndex = styles.length ? styles[0].i : 0;
    sc.value = String(this.contentIndex);
    ss.value = String(this.styleIndex);
    sc.disabled = !nAtoms; ss.disabled = !styles.length;
  };
  function tile(rec, r, c, caption, audio) {
    var fig = el("figure", { "class": "tile" });
    fig.style.width = Math.max(rec.dw + 2, 72) + "px";
    var crop = el("div", { "class": "crop" });
    crop.style.width = rec.dw + "px";
    crop.style.height = rec.dh + "px";
    var img = el("img", { src: rec.sprite, alt: caption, decoding: "async" });
    img.style.width = (rec.styles.length * rec.dw) + "px";
    img.style.height = (rec.atoms.length * rec.dh) + "px";
    img.style.left = (-c * rec.dw) + "px";
    img.style.top = (-r * rec.dh) + "px";
    crop.appendChild(img);
    fig.appendChild(crop);
    fig.appendChild(el("figcaption", { title: caption }, caption));
    if (audio) {
      var a = el("audio", { preload: "none", src: audio });
      var b = el("button", { type: "button", "class": "play", title: "play this cell" }, "▶");
      b.addEventListener("click", function () {
        if (!a.paused) { a.pause(); return; }
        document.querySelectorAll("audio").forEach(function (o) { if (o !== a) o.pause(); });
        a.currentTime = 0;
        a.play();
      });
      a.addEventListener("play", function () { b.textContent = "❚❚"; });
      a.addEventListener("pause", function () { b.textContent = "▶"; });
      a.addEventListener("ended", function () { b.textContent = "▶"; });
      fig.appendChild(a);
      fig.appendChild(b);
    }
    return fig;
  }
  Section.prototype.traverse = function () {
    var self = this;
    this.selContent.classList.toggle("active", this.mode === "content");
    this.selStyle.classList.toggle("active", this.mode === "style");
    this.root.querySelectorAll("td.strip").forEach(function (td) {
      td.textContent = "";
      var cell = self.cell(td.getAttribute("data-method"));
      function missing(text) { td.appendChild(el("div", { "class": "missing" }, text)); }
      if (!cell) return missing("not run for K=" + self.k);
      var rec = cell.recomb;
      if (!rec) return missing("no recombination grid (run `varinv recombine`)");
      var tiles = el("div", { "class": "tiles" });
      if (self.mode === "content") {
        var r = self.contentIndex, a = rec.atoms[r];
        if (!a) return missing("this run has only " + rec.atoms.length + " content indices");
        td.appendChild(el("div", { "class": "label" }, "content index " + r + " = atom " + a.id +
          (a.label ? " (majority class " + a.label + ")" : "") + ", with every style:"));
        rec.styles.forEach(function (s, c) { tiles.appendChild(tile(rec, r, c, s.name, rec.cell_audio[r + "," + c])); });
        td.appendChild(tiles);
        if (rec.row_audio[r]) td.appendChild(audioEl(rec.row_audio[r], "the whole traversal:"));
        else if (rec.audio_left_out) td.appendChild(el("div", { "class": "note" }, "audio of this traversal left out to keep the page small"));
      } else {
        var c = -1;
        rec.styles.forEach(function (s, j) { if (s.i === self.styleIndex) c = j; });
        if (c < 0) return missing("this run has no style " + self.styleIndex);
        td.appendChild(el("div", { "class": "label" }, "style " + rec.styles[c].name + ", with every content index:"));
        rec.atoms.forEach(function (a, r) {
          tiles.appendChild(tile(rec, r, c, "#" + r + (a.label ? " · " + a.label : ""), rec.cell_audio[r + "," + c]));
        });
        td.appendChild(tiles);
        if (rec.col_audio[c]) td.appendChild(audioEl(rec.col_audio[c], "the whole traversal:"));
        else if (rec.audio_left_out) td.appendChild(el("div", { "class": "note" }, "audio of this traversal left out to keep the page small"));
      }
    });
  };

  // ---- lightbox: a confusion matrix enlarged (its natural size, at least twice the shown size) -----
  var box = document.getElementById("lightbox");
  function enlarge(img) {
    if (!box || !img.getAttribute("src")) return;
    var big = box.querySelector("img");
    big.setAttribute("src", img.getAttribute("src"));
    big.setAttribute("alt", img.getAttribute("alt") || "");
    var nw = img.naturalWidth || img.clientWidth;
    big.style.width = Math.round(Math.max(nw * 1.6, img.clientWidth * 2)) + "px";  // scrolls in the box
    big.style.height = "auto";
    if (box.showModal) box.showModal(); else box.setAttribute("open", "");
  }
  if (box) {
    box.querySelector(".lb-body").addEventListener("click", function () { box.close ? box.close() : box.removeAttribute("open"); });
    box.addEventListener("click", function (e) { if (e.target === box) box.close(); });
  }
  document.querySelectorAll("img.confusion").forEach(function (img) {
    img.addEventListener("click", function () { enlarge(img); });
    img.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); enlarge(img); }
    });
  });

  // ---- start -------------------------------------------------------------------------------------
  var sections = MANIFEST.datasets.map(function (m) { return new Section(m); });
  function reveal(sec) { if (!sec.visible) { sec.visible = true; sec.latents(); } }
  if ("IntersectionObserver" in window) {
    var io = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) {
        if (e.isIntersecting) sections.forEach(function (s) { if (s.root === e.target) reveal(s); });
      });
    }, { rootMargin: "600px" });
    sections.forEach(function (s) { io.observe(s.root); });
  } else sections.forEach(reveal);
  var pending = null;
  window.addEventListener("resize", function () {
    clearTimeout(pending);
    pending = setTimeout(function () { sections.forEach(function (s) { s.scatters.forEach(function (sc) { sc.draw(); }); }); }, 100);
  });
})();
