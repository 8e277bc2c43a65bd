/*
 * Interactive figures for the course site: plain JavaScript, no server, no libraries.
 *
 * A chapter places a <figure data-p2l-figure="NAME"> (a MyST {raw} html block) holding
 * labelled inputs, an empty <svg> and readout elements; this file finds each figure,
 * computes the numbers and draws the plot whenever an input changes. Every number
 * drawn is also written as text in the readouts (and into the plot's accessible label).
 *
 *   softmax       - softmax of editable logits at a temperature         (chapter 5)
 *   gaussian      - N(mu, sigma^2) with the 68-95-99.7 bands             (chapter 3)
 *   cross-entropy - loss -log q and its gradients as q(true class) moves (chapter 8)
 */
(function () {
  "use strict";

  var SVG_NS = "http://www.w3.org/2000/svg";

  // ---------------------------------------------------------------- maths

  function softmax(logits, temperature) {
    var z = logits.map(function (v) { return v / temperature; });
    var m = Math.max.apply(null, z);              // subtract the max: no overflow
    var e = z.map(function (v) { return Math.exp(v - m); });
    var total = e.reduce(function (a, b) { return a + b; }, 0);
    return e.map(function (v) { return v / total; });
  }

  // erf by its Maclaurin series (|x| < 3) or continued fraction of erfc (|x| >= 3):
  // accurate to ~1e-15, far more than the 4 decimals shown.
  function erf(x) {
    var sign = x < 0 ? -1 : 1;
    x = Math.abs(x);
    if (x < 3) {
      var term = x, sum = x, n = 0;
      while (Math.abs(term) > 1e-17 * Math.abs(sum) && n < 200) {
        n += 1;
        term *= -x * x / n;
        sum += term / (2 * n + 1);
      }
      return sign * 2 / Math.sqrt(Math.PI) * sum;
    }
    // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...))))
    var f = x;
    for (var k = 60; k >= 1; k--) { f = x + (k / 2) / f; }
    return sign * (1 - Math.exp(-x * x) / Math.sqrt(Math.PI) / f);
  }

  function normalCdf(x, mu, sigma) {
    return 0.5 * (1 + erf((x - mu) / (sigma * Math.SQRT2)));
  }

  function gaussianPdf(x, mu, sigma) {
    var u = (x - mu) / sigma;
    return Math.exp(-0.5 * u * u) / (sigma * Math.sqrt(2 * Math.PI));
  }

  function fixed(value, digits) {
    var text = value.toFixed(digits);
    return /^-0\.?0*$/.test(text) ? text.slice(1) : text;   // never show "-0.0000"
  }

  // -------------------------------------------------------- tiny SVG kit

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG_NS, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function text(parent, x, y, content, attrs) {
    var node = el("text", Object.assign({ x: x, y: y }, attrs || {}), parent);
    node.textContent = content;
    return node;
  }

  // The box a drawn element takes (null where the browser cannot tell: not rendered).
  function measure(node) {
    try {
      var b = node.getBBox();
      return b.width || b.height ? b : null;
    } catch (error) {
      return null;
    }
  }

  // Grow the viewBox to hold everything drawn (larger text on phones), never shrink it below the
  // size the chapter gave.
  function fit(svg) {
    if (!svg.dataset.viewBox) { svg.dataset.viewBox = svg.getAttribute("viewBox"); }
    var v = svg.dataset.viewBox.split(/\s+/).map(Number);
    var b = measure(svg);
    if (!b) { return; }
    var x0 = Math.min(v[0], b.x - 4), y0 = Math.min(v[1], b.y - 4);
    var x1 = Math.max(v[0] + v[2], b.x + b.width + 4), y1 = Math.max(v[1] + v[3], b.y + b.height + 4);
    svg.setAttribute("viewBox", [x0, y0, x1 - x0, y1 - y0].map(function (n) { return Math.round(n); }).join(" "));
  }

  // Redraw when the layout changes (a phone turned, the window resized): text sizes follow the width.
  function onResize(update) {
    var pending = false, width = window.innerWidth;
    window.addEventListener("resize", function () {
      if (pending || window.innerWidth === width) { return; }
      pending = true;
      window.requestAnimationFrame(function () { pending = false; width = window.innerWidth; update(); });
    });
  }

  // About n round tick values from lo to hi (steps of 1, 2 or 5 times a power of ten).
  function niceTicks(lo, hi, n) {
    var raw = (hi - lo) / n, power = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 5, 10].map(function (m) { return m * power; }).filter(function (s) { return s >= raw; })[0];
    var ticks = [];
    for (var v = Math.ceil(lo / step - 1e-9) * step; v <= hi + 1e-9; v += step) { ticks.push(Math.round(v / step) * step); }
    return { ticks: ticks, step: step };
  }

  function clear(svg) {
    while (svg.lastChild) { svg.removeChild(svg.lastChild); }
  }

  // A plotting frame: data -> pixel scales, axes with ticks, axis titles.
  function frame(svg, box, xr, yr, opts) {
    var sx = function (v) { return box.x + (v - xr[0]) / (xr[1] - xr[0]) * box.w; };
    var sy = function (v) { return box.y + box.h - (v - yr[0]) / (yr[1] - yr[0]) * box.h; };
    var g = el("g", { "class": "p2l-axes" }, svg);
    el("line", { x1: box.x, y1: box.y + box.h, x2: box.x + box.w, y2: box.y + box.h }, g);
    el("line", { x1: box.x, y1: box.y, x2: box.x, y2: box.y + box.h }, g);
    (opts.xticks || []).forEach(function (t) {
      el("line", { x1: sx(t), y1: box.y + box.h, x2: sx(t), y2: box.y + box.h + 4 }, g);
      text(g, sx(t), box.y + box.h + 16, opts.xfmt ? opts.xfmt(t) : String(t), { "text-anchor": "middle" });
    });
    (opts.yticks || []).forEach(function (t) {
      el("line", { x1: box.x - 4, y1: sy(t), x2: box.x, y2: sy(t) }, g);
      text(g, box.x - 7, sy(t) + 4, opts.yfmt ? opts.yfmt(t) : String(t), { "text-anchor": "end" });
    });
    // Axis titles go outside the tick labels as drawn: on phones the CSS makes all text larger
    // (interactive-figures.css), so fixed offsets put the titles over the tick labels.
    var xBottom = box.y + box.h + 16, yLeft = box.x - 32;
    Array.prototype.forEach.call(g.querySelectorAll("text"), function (label) {
      var b = measure(label);
      if (!b) { return; }
      if (b.y > box.y + box.h) { xBottom = Math.max(xBottom, b.y + b.height); }
      else if (b.x + b.width <= box.x) { yLeft = Math.min(yLeft, b.x); }
    });
    if (opts.xlabel) {
      var xt = text(g, box.x + box.w / 2, 0, opts.xlabel, { "text-anchor": "middle", "class": "p2l-axis-title" });
      var xh = measure(xt);
      xt.setAttribute("y", xBottom + 4 + (xh ? xh.height * 0.8 : 14));
    }
    if (opts.ylabel) {
      var yl = box.y + box.h / 2;
      var ytitle = text(g, 0, yl, opts.ylabel, { "text-anchor": "middle", "class": "p2l-axis-title" });
      var yh = measure(ytitle);
      var yx = yLeft - 6 - (yh ? yh.height * 0.25 : 4);
      ytitle.setAttribute("x", yx);
      ytitle.setAttribute("transform", "rotate(-90 " + yx + " " + yl + ")");
    }
    if (opts.title) {
      text(g, box.x + box.w / 2, box.y - 10, opts.title, { "text-anchor": "middle", "class": "p2l-plot-title" });
    }
    return { sx: sx, sy: sy };
  }

  function path(points) {
    return points.map(function (p, i) { return (i ? "L" : "M") + p[0].toFixed(2) + "," + p[1].toFixed(2); }).join("");
  }

  function role(figure, name) {
    return figure.querySelector('[data-role="' + name + '"]');
  }

  function roles(figure, name) {
    return Array.prototype.slice.call(figure.querySelectorAll('[data-role="' + name + '"]'));
  }

  function number(input) {
    var v = parseFloat(input.value);
    return isFinite(v) ? v : NaN;
  }

  function describe(svg, label) {
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", label);
  }

  // -------------------------------------------------------------- softmax

  function setupSoftmax(figure) {
    var logitInputs = roles(figure, "logit");
    var temperature = role(figure, "temperature");
    var temperatureOut = role(figure, "temperature-value");
    var rows = role(figure, "rows");
    var status = role(figure, "status");
    var svg = figure.querySelector("svg");

    function update() {
      var T = number(temperature);
      var logits = logitInputs.map(number);
      temperatureOut.textContent = fixed(T, 2);
      if (logits.some(isNaN) || !(T > 0)) {
        // No stale numbers: the bars, the table and the label of the last valid input go too.
        status.textContent = "Every logit must be a number.";
        rows.textContent = "";
        clear(svg);
        delete figure.dataset.probabilities;
        describe(svg, "No bar chart: every logit must be a number. Enter a number in each logit field.");
        return;
      }
      status.textContent = "";
      var probs = softmax(logits, T);
      figure.dataset.probabilities = JSON.stringify(probs);

      rows.textContent = "";
      probs.forEach(function (p, i) {
        var tr = document.createElement("tr");
        var th = document.createElement("th");
        th.scope = "row";
        th.textContent = "class " + (i + 1);
        var tdZ = document.createElement("td");
        tdZ.textContent = String(logits[i]);
        var tdP = document.createElement("td");
        tdP.textContent = fixed(p, 4);
        tdP.setAttribute("data-role", "probability");
        tr.appendChild(th); tr.appendChild(tdZ); tr.appendChild(tdP);
        rows.appendChild(tr);
      });

      clear(svg);
      var box = { x: 60, y: 30, w: 400, h: 190 };
      var f = frame(svg, box, [0, probs.length], [0, 1], {
        yticks: [0, 0.25, 0.5, 0.75, 1], yfmt: function (t) { return t.toFixed(2); },
        xlabel: "class", ylabel: "probability",
        title: "softmax(z / T) at T = " + fixed(T, 2)
      });
      probs.forEach(function (p, i) {
        var x0 = f.sx(i + 0.2), x1 = f.sx(i + 0.8);
        el("rect", { "class": "p2l-bar", x: x0, y: f.sy(p), width: x1 - x0, height: f.sy(0) - f.sy(p) }, svg);
        text(svg, (x0 + x1) / 2, f.sy(p) - 5, fixed(p, 4), { "text-anchor": "middle", "class": "p2l-value" });
        text(svg, (x0 + x1) / 2, f.sy(0) + 16, "z = " + logits[i], { "text-anchor": "middle" });
      });
      describe(svg, "Bar chart of the softmax probabilities at temperature " + fixed(T, 2) + ": " +
        probs.map(function (p, i) { return "class " + (i + 1) + " (logit " + logits[i] + ") " + fixed(p, 4); }).join(", ") + ".");
      fit(svg);
    }
    onResize(update);

    logitInputs.concat([temperature]).forEach(function (input) {
      input.addEventListener("input", update);
      input.addEventListener("change", update);
    });
    update();
  }

  // ------------------------------------------------------------- gaussian

  function setupGaussian(figure) {
    var mu = role(figure, "mu"), sigma = role(figure, "sigma");
    var svg = figure.querySelector("svg");
    var XR = [-10, 10], YR = [0, 1];  // x: at least this much, more where the ±3σ band needs it; y: to the peak

    function update() {
      var m = number(mu), s = number(sigma);
      role(figure, "mu-value").textContent = fixed(m, 1);
      role(figure, "sigma-value").textContent = fixed(s, 1);
      var peak = gaussianPdf(m, m, s);
      role(figure, "peak").textContent = fixed(peak, 4);
      role(figure, "below-zero").textContent = fixed(normalCdf(0, m, s), 4);
      var bands = [1, 2, 3].map(function (k) {
        var lo = m - k * s, hi = m + k * s;
        var mass = normalCdf(hi, m, s) - normalCdf(lo, m, s);
        role(figure, "band-" + k).textContent =
          "[" + fixed(lo, 2) + ", " + fixed(hi, 2) + "]";
        role(figure, "mass-" + k).textContent = fixed(100 * mass, 2) + "%";
        return { k: k, lo: lo, hi: hi, mass: mass };
      });

      clear(svg);
      var box = { x: 60, y: 30, w: 420, h: 180 };
      // The axes hold the whole ±3σ band (with a margin) and the peak.
      var xt = niceTicks(Math.min(-10, m - 3.5 * s), Math.max(10, m + 3.5 * s), 10);
      XR = [Math.min(-10, xt.ticks[0] > m - 3.5 * s ? xt.ticks[0] - xt.step : xt.ticks[0]),
            Math.max(10, xt.ticks[xt.ticks.length - 1] < m + 3.5 * s ? xt.ticks[xt.ticks.length - 1] + xt.step : xt.ticks[xt.ticks.length - 1])];
      var top = peak * 1.6;  // room above the curve for the legend
      var yt = niceTicks(0, top, 4);
      var last = yt.ticks[yt.ticks.length - 1];
      YR = [0, last < top ? last + yt.step : last];
      var ydigits = yt.step < 0.01 ? 3 : yt.step < 1 ? 2 : 0;
      var f = frame(svg, box, XR, YR, {
        xticks: niceTicks(XR[0], XR[1], 10).ticks, yticks: niceTicks(YR[0], YR[1], 4).ticks.filter(function (v) { return v <= YR[1] + 1e-12; }),
        yfmt: function (t) { return t.toFixed(ydigits); },
        xlabel: "x", ylabel: "density",
        title: "Gaussian density, \u03bc = " + fixed(m, 1) + ", \u03c3 = " + fixed(s, 1)
      });
      function curve(lo, hi) {
        lo = Math.max(lo, XR[0]); hi = Math.min(hi, XR[1]);
        var pts = [], n = 240;
        for (var i = 0; i <= n; i++) {
          var x = lo + (hi - lo) * i / n;
          pts.push([f.sx(x), f.sy(Math.min(gaussianPdf(x, m, s), YR[1]))]);
        }
        return pts;
      }
      bands.slice().reverse().forEach(function (b) {
        var pts = curve(b.lo, b.hi);
        pts.push([pts[pts.length - 1][0], f.sy(0)]);
        pts.push([pts[0][0], f.sy(0)]);
        el("path", { d: path(pts) + "Z", "class": "p2l-band p2l-band-" + b.k }, svg);
      });
      el("path", { d: path(curve(XR[0], XR[1])), "class": "p2l-curve" }, svg);
      el("line", { x1: f.sx(m), x2: f.sx(m), y1: f.sy(0), y2: f.sy(Math.min(peak, YR[1])), "class": "p2l-marker-line" }, svg);
      // A legend for the bands, inside the plot's top-left corner.
      bands.forEach(function (b, i) {
        var y = box.y + 8 + i * 18;
        el("rect", { x: box.x + 10, y: y - 10, width: 14, height: 12, "class": "p2l-band p2l-band-" + b.k }, svg);
        text(svg, box.x + 30, y, "\u00b1" + b.k + "\u03c3: " + fixed(100 * b.mass, 2) + "%", {});
      });
      describe(svg, "Gaussian density with mean " + fixed(m, 1) + " and standard deviation " + fixed(s, 1) +
        ", peak density " + fixed(peak, 4) + ". " + bands.map(function (b) {
          return fixed(100 * b.mass, 2) + "% of the mass lies in [" + fixed(b.lo, 2) + ", " + fixed(b.hi, 2) + "]";
        }).join("; ") + ".");
      svg.dataset.xRange = JSON.stringify(XR);
      svg.dataset.yRange = JSON.stringify(YR);
      fit(svg);
    }
    onResize(update);

    [mu, sigma].forEach(function (input) {
      input.addEventListener("input", update);
      input.addEventListener("change", update);
    });
    update();
  }

  // -------------------------------------------------------- cross-entropy

  function setupCrossEntropy(figure) {
    var prob = role(figure, "q-true");
    var svg = figure.querySelector("svg");

    function update() {
      var q = number(prob);
      var loss = -Math.log(q), dLdq = -1 / q, dLdz = q - 1;
      role(figure, "q-value").textContent = fixed(q, 3);
      role(figure, "loss").textContent = fixed(loss, 4);
      role(figure, "grad-logit").textContent = fixed(dLdz, 4);
      role(figure, "grad-prob").textContent = fixed(dLdq, 4);

      clear(svg);
      var qs = [];
      for (var i = 1; i <= 200; i++) { qs.push(i / 200); }
      qs.unshift(0.001, 0.002, 0.003);

      var left = { x: 60, y: 30, w: 200, h: 170 };
      var fl = frame(svg, left, [0, 1], [0, 7], {
        xticks: [0, 0.25, 0.5, 0.75, 1], yticks: [0, 1, 2, 3, 4, 5, 6, 7],
        xlabel: "q(true class)", ylabel: "loss", title: "loss \u2212log q"
      });
      el("path", {
        d: path(qs.map(function (v) { return [fl.sx(v), fl.sy(Math.min(-Math.log(v), 7))]; })), "class": "p2l-curve"
      }, svg);
      // tangent line: slope dL/dq = -1/q, drawn over a short span around q and cut
      // where it leaves the plot (loss 7 above, 0 below), so both ends stay on the line
      var half = 0.12;
      var t0 = Math.max(q - half, 0, q + (7 - loss) / dLdq);
      var t1 = Math.min(q + half, 1, q - loss / dLdq);
      el("line", {
        x1: fl.sx(t0), y1: fl.sy(loss + dLdq * (t0 - q)),
        x2: fl.sx(t1), y2: fl.sy(loss + dLdq * (t1 - q)), "class": "p2l-tangent"
      }, svg);
      el("circle", { cx: fl.sx(q), cy: fl.sy(Math.min(loss, 7)), r: 5, "class": "p2l-point" }, svg);

      var right = { x: 340, y: 30, w: 200, h: 170 };
      var fr = frame(svg, right, [0, 1], [-1, 0], {
        xticks: [0, 0.25, 0.5, 0.75, 1], yticks: [-1, -0.75, -0.5, -0.25, 0],
        yfmt: function (t) { return t.toFixed(2); },
        xlabel: "q(true class)", ylabel: "gradient", title: "\u2202loss/\u2202z_true = q \u2212 1"
      });
      el("path", { d: path([[fr.sx(0), fr.sy(-1)], [fr.sx(1), fr.sy(0)]]), "class": "p2l-curve p2l-curve-2" }, svg);
      el("circle", { cx: fr.sx(q), cy: fr.sy(dLdz), r: 5, "class": "p2l-point" }, svg);

      describe(svg, "Cross-entropy at q(true class) = " + fixed(q, 3) + ": loss " + fixed(loss, 4) +
        ", gradient with respect to the true logit " + fixed(dLdz, 4) +
        ", derivative with respect to q " + fixed(dLdq, 4) + ".");
      fit(svg);
    }
    onResize(update);

    prob.addEventListener("input", update);
    prob.addEventListener("change", update);
    update();
  }

  var SETUP = { "softmax": setupSoftmax, "gaussian": setupGaussian, "cross-entropy": setupCrossEntropy };

  function init() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-p2l-figure]"), function (figure) {
      var setup = SETUP[figure.getAttribute("data-p2l-figure")];
      if (!setup) { return; }
      setup(figure);
      figure.classList.add("p2l-ready");
    });
  }

  // Exposed for the browser tests and for curious readers' consoles.
  window.p2lFigures = { softmax: softmax, erf: erf, normalCdf: normalCdf, gaussianPdf: gaussianPdf };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
