/* flowdl's line charts: a small SVG renderer written for flowdl's pages (no library).
   One chart per call of draw(): its own value axis, a log-scale toggle, zoom (drag a
   range, wheel, or the range buttons; double-click resets), and a hover tooltip with the
   epoch and every value. Every user string is set as text, never read as markup. */
"use strict";
window.flowdlCharts = (function () {
  const NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#475569", "#b45309"];
  const DASHES = ["", "6 3", "2 3", "8 3 2 3"];
  const MARGIN = {l: 62, r: 14, t: 10, b: 34};

  function node(tag, attrs, parent) {
    const made = document.createElementNS(NS, tag);
    for (const key in attrs) made.setAttribute(key, attrs[key]);
    if (parent) parent.appendChild(made);
    return made;
  }
  function html(tag, className, text, parent) {
    const made = document.createElement(tag);
    if (className) made.className = className;
    if (text !== undefined) made.textContent = text;
    if (parent) parent.appendChild(made);
    return made;
  }
  function plain(text) { return String(text); }
  function isLoss(name) { return /loss/i.test(String(name)); }

  function shortNumber(value) {
    if (value === 0) return "0";
    const size = Math.abs(value);
    if (size >= 1e5 || size < 1e-3) return value.toExponential(0).replace("e+", "e");
    return String(Number(value.toPrecision(3)));
  }

  function linearTicks(lo, hi, count) {
    const span = hi - lo || Math.abs(hi) || 1;
    const raw = span / count;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map(function (m) { return m * power; }).find(function (s) { return s >= raw; });
    const ticks = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    return ticks;
  }

  function logTicks(lo, hi) {
    const first = Math.floor(Math.log10(lo));
    const last = Math.ceil(Math.log10(hi));
    const ticks = [];
    const few = last - first <= 2;
    for (let e = first; e <= last; e++) {
      for (const m of few ? [1, 2, 5] : [1]) {
        const v = m * Math.pow(10, e);
        if (v >= lo * 0.999 && v <= hi * 1.001) ticks.push(v);
      }
    }
    return ticks.length ? ticks : [lo, hi];
  }

  function epochTicks(lo, hi, width) {
    const fits = Math.max(2, Math.floor(width / 48));
    const span = Math.max(1, hi - lo);
    let step = 1;
    while (span / step > fits) step = step < 5 ? step + (step === 1 ? 1 : 3) : step * 2;
    const ticks = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) if (v >= 1 || lo < 1) ticks.push(v);
    return ticks;
  }

  /* The full epoch range of `series`, with half an epoch of room on each side. */
  function fullRange(series, extent) {
    if (extent) return extent;
    let first = Infinity;
    let last = -Infinity;
    for (const s of series) for (const x of s.x) { first = Math.min(first, x); last = Math.max(last, x); }
    return first <= last ? [first - 0.5, last + 0.5] : [0.5, 1.5];
  }

  function valueRange(chart, xs) {
    const o = chart.options;
    if (o.yRange) return {lo: o.yRange[0], hi: o.yRange[1], log: false};
    let lo = Infinity;
    let hi = -Infinity;
    let positive = Infinity;
    for (const s of chart.series) {
      s.x.forEach(function (x, k) {
        const y = s.y[k];
        if (y === null || !isFinite(y) || x < xs[0] || x > xs[1]) return;
        lo = Math.min(lo, y); hi = Math.max(hi, y);
        if (y > 0) positive = Math.min(positive, y);
      });
    }
    if (lo > hi) return {lo: 0, hi: 1, log: false};
    const log = chart.log && positive < Infinity;
    if (log) {
      const a = Math.log10(positive);
      const b = Math.log10(Math.max(hi, positive));
      const pad = Math.max((b - a) * 0.06, 0.05);
      return {lo: Math.pow(10, a - pad), hi: Math.pow(10, b + pad), log: true};
    }
    if (o.yFromZero) lo = Math.min(lo, 0);
    const pad = (hi - lo) * 0.06 || Math.abs(hi) * 0.1 || 1;
    return {lo: o.yFromZero && lo === 0 ? 0 : lo - pad, hi: hi + pad, log: false};
  }

  function colorOf(chart, i) {
    const colors = chart.options.palette && chart.options.palette.length ? chart.options.palette : COLORS;
    return colors[i % colors.length];
  }

  function setRange(chart, range) {
    const members = chart.options.group ? chart.options.group.members : [chart];
    for (const member of members) { member.xRange = range; render(member); }
  }

  function render(chart) {
    const element = chart.element;
    const width = Math.max(240, element.clientWidth || 600);
    const height = chart.options.height || 300;
    const full = fullRange(chart.series, chart.options.extent);
    let xs = chart.xRange || full;
    xs = [Math.max(xs[0], full[0]), Math.min(xs[1], full[1])];
    if (xs[1] - xs[0] < 1) xs = full;
    const ys = valueRange(chart, xs);
    const plotW = width - MARGIN.l - MARGIN.r;
    const plotH = height - MARGIN.t - MARGIN.b;
    const X = function (x) { return MARGIN.l + (x - xs[0]) / (xs[1] - xs[0]) * plotW; };
    const toY = ys.log ? function (y) { return Math.log10(y); } : function (y) { return y; };
    const Y = function (y) { return MARGIN.t + (1 - (toY(y) - toY(ys.lo)) / (toY(ys.hi) - toY(ys.lo) || 1)) * plotH; };
    chart.scale = {X: X, xs: xs, ys: ys, plotW: plotW};
    chart.box.checked = ys.log;

    const svg = chart.svg;
    svg.replaceChildren();
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("data-scale", ys.log ? "log" : "linear");
    const clipId = "clip-" + chart.id;
    node("rect", {x: MARGIN.l, y: MARGIN.t, width: plotW, height: plotH}, node("clipPath", {id: clipId}, node("defs", {}, svg)));
    const axis = node("g", {class: "y-axis"}, svg);
    for (const t of ys.log ? logTicks(ys.lo, ys.hi) : linearTicks(ys.lo, ys.hi, Math.max(2, Math.floor(plotH / 40)))) {
      const y = Y(t);
      if (y < MARGIN.t - 1 || y > MARGIN.t + plotH + 1) continue;
      node("line", {x1: MARGIN.l, x2: MARGIN.l + plotW, y1: y, y2: y, class: "grid"}, axis);
      node("text", {x: MARGIN.l - 6, y: y + 4, "text-anchor": "end", class: "tick"}, axis).textContent = shortNumber(t);
    }
    const xAxis = node("g", {class: "x-axis"}, svg);
    for (const t of epochTicks(xs[0], xs[1], plotW)) {
      node("line", {x1: X(t), x2: X(t), y1: MARGIN.t + plotH, y2: MARGIN.t + plotH + 4, class: "axis"}, xAxis);
      node("text", {x: X(t), y: MARGIN.t + plotH + 16, "text-anchor": "middle", class: "tick"}, xAxis).textContent = String(t);
    }
    node("text", {x: MARGIN.l + plotW / 2, y: height - 3, "text-anchor": "middle", class: "title"}, xAxis).textContent = chart.options.xTitle || "Epoch";
    if (chart.options.yTitle) {
      node("text", {x: 12, y: MARGIN.t + plotH / 2, "text-anchor": "middle", class: "title", transform: "rotate(-90 12 " + (MARGIN.t + plotH / 2) + ")"}, axis).textContent = chart.options.yTitle;
    }
    node("rect", {x: MARGIN.l, y: MARGIN.t, width: plotW, height: plotH, class: "frame"}, svg);
    const plot = node("g", {"clip-path": "url(#" + clipId + ")"}, svg);
    // marks: a dashed line each; labels in up to three rows so they do not overlap
    const rows = [-Infinity, -Infinity, -Infinity];
    const marks = (chart.options.marks || []).slice().sort(function (a, b) { return a.epoch - b.epoch; });
    for (const mark of marks) {
      if (mark.epoch < xs[0] || mark.epoch > xs[1]) continue;
      const g = node("g", {class: "mark"}, plot);
      const at = X(mark.epoch);
      node("line", {x1: at, x2: at, y1: MARGIN.t, y2: MARGIN.t + plotH}, g);
      const wide = 6 * mark.text.length;
      const right = at + 3 + wide > MARGIN.l + plotW;
      const start = right ? at - 3 - wide : at + 3;
      const row = rows.findIndex(function (end) { return end < start; });
      if (row < 0) continue;  // no room: the tooltip still tells
      rows[row] = start + wide + 4;
      node("text", {x: right ? at - 3 : at + 3, y: MARGIN.t + 11 + 12 * row, "text-anchor": right ? "end" : "start"}, g).textContent = mark.text;
    }
    const visible = chart.series.reduce(function (n, s) { return n + s.x.filter(function (x) { return x >= xs[0] && x <= xs[1]; }).length; }, 0);
    chart.series.forEach(function (s, i) {
      if (chart.hidden.has(s.name)) return;
      const colors = chart.options.palette && chart.options.palette.length ? chart.options.palette.length : COLORS.length;
      let d = "";
      let pen = false;
      const dots = [];
      s.x.forEach(function (x, k) {
        const y = s.y[k];
        if (y === null || !isFinite(y) || (ys.log && y <= 0)) { pen = false; return; }
        d += (pen ? "L" : "M") + X(x).toFixed(1) + " " + Y(y).toFixed(1);
        pen = true;
        dots.push([X(x), Y(y)]);
      });
      const color = colorOf(chart, i);
      const line = node("path", {d: d, class: "line", stroke: color, "data-series": String(i)}, plot);
      const dash = DASHES[Math.floor(i / colors) % DASHES.length];
      if (dash) line.setAttribute("stroke-dasharray", dash);
      if (visible <= 80 * chart.series.length) {
        for (const p of dots) node("circle", {cx: p[0], cy: p[1], r: 2.6, fill: color}, plot);
      }
    });
    chart.guide = node("g", {class: "guide", visibility: "hidden"}, svg);
    chart.brush = node("rect", {class: "brush", y: MARGIN.t, height: plotH, width: 0, visibility: "hidden"}, svg);
    chart.overlay = node("rect", {x: MARGIN.l, y: MARGIN.t, width: plotW, height: plotH, class: "overlay"}, svg);
    renderLegend(chart);
    chart.renders += 1;
  }

  function renderLegend(chart) {
    const legend = chart.legend;
    legend.replaceChildren();
    const shown = chart.options.showLegend !== undefined ? chart.options.showLegend : chart.series.length > 1;
    if (!shown) return;
    chart.series.forEach(function (s, i) {
      const item = html("span", "item" + (chart.hidden.has(s.name) ? " off" : ""), undefined, legend);
      html("i", "", undefined, item).style.background = colorOf(chart, i);
      html("span", "", s.name, item);
      item.addEventListener("click", function () {
        if (chart.hidden.has(s.name)) chart.hidden.delete(s.name); else chart.hidden.add(s.name);
        render(chart);
      });
    });
  }

  /* The epoch nearest the pointer, and every series' value there. */
  function hover(chart, clientX) {
    const rect = chart.svg.getBoundingClientRect();
    const sc = chart.scale;
    const x = sc.xs[0] + (clientX - rect.left - MARGIN.l) / sc.plotW * (sc.xs[1] - sc.xs[0]);
    let best = null;
    for (const s of chart.series) for (const e of s.x) if (best === null || Math.abs(e - x) < Math.abs(best - x)) best = e;
    if (best === null) return;
    const guide = chart.guide;
    guide.replaceChildren();
    guide.setAttribute("visibility", "visible");
    node("line", {x1: sc.X(best), x2: sc.X(best), y1: MARGIN.t, y2: chart.svg.height.baseVal.value - MARGIN.b}, guide);
    const tip = chart.tip;
    tip.replaceChildren();
    html("div", "tip-epoch", (chart.options.xTitle || "Epoch").toLowerCase() + " " + best, tip);
    chart.series.forEach(function (s, i) {
      if (chart.hidden.has(s.name)) return;
      const k = s.x.indexOf(best);
      if (k < 0) return;
      const row = html("div", "tip-row", undefined, tip);
      html("i", "", undefined, row).style.background = colorOf(chart, i);
      html("span", "", s.name + ": " + (s.text && s.text[k] ? s.text[k] : s.y[k] === null ? "–" : String(s.y[k])), row);
    });
    for (const mark of chart.options.marks || []) {
      if (mark.epoch === best) html("div", "tip-mark", "▲ " + mark.text, tip);
    }
    tip.style.display = "block";
    const left = sc.X(best) + 12;
    tip.style.left = (left + tip.offsetWidth > rect.width ? sc.X(best) - 12 - tip.offsetWidth : left) + "px";
    tip.style.top = MARGIN.t + 4 + "px";
    chart.hovered = best;
  }

  function unhover(chart) {
    chart.tip.style.display = "none";
    chart.guide.setAttribute("visibility", "hidden");
    chart.hovered = null;
  }

  function pointerEpoch(chart, clientX) {
    const sc = chart.scale;
    const rect = chart.svg.getBoundingClientRect();
    return sc.xs[0] + (clientX - rect.left - MARGIN.l) / sc.plotW * (sc.xs[1] - sc.xs[0]);
  }

  function listen(chart) {
    const svg = chart.svg;
    let drag = null;
    svg.addEventListener("mousemove", function (event) {
      if (drag !== null) {
        const rect = svg.getBoundingClientRect();
        const a = Math.max(MARGIN.l, Math.min(drag, event.clientX - rect.left));
        const b = Math.max(MARGIN.l, Math.min(Math.max(drag, event.clientX - rect.left), MARGIN.l + chart.scale.plotW));
        chart.brush.setAttribute("x", a);
        chart.brush.setAttribute("width", b - a);
        chart.brush.setAttribute("visibility", "visible");
      }
      hover(chart, event.clientX);
    });
    svg.addEventListener("mouseleave", function () { unhover(chart); drag = null; });
    svg.addEventListener("mousedown", function (event) {
      drag = event.clientX - svg.getBoundingClientRect().left;
      event.preventDefault();
    });
    svg.addEventListener("mouseup", function (event) {
      if (drag === null) return;
      const start = drag;
      drag = null;
      const end = event.clientX - svg.getBoundingClientRect().left;
      if (Math.abs(end - start) < 6) { chart.brush.setAttribute("visibility", "hidden"); return; }
      const rect = svg.getBoundingClientRect();
      const a = pointerEpoch(chart, rect.left + Math.min(start, end));
      const b = pointerEpoch(chart, rect.left + Math.max(start, end));
      setRange(chart, [a, Math.max(b, a + 1)]);
    });
    svg.addEventListener("dblclick", function () { setRange(chart, null); });
    svg.addEventListener("wheel", function (event) {
      event.preventDefault();
      const at = pointerEpoch(chart, event.clientX);
      const xs = chart.scale.xs;
      const factor = event.deltaY < 0 ? 0.8 : 1.25;
      const full = fullRange(chart.series, chart.options.extent);
      const next = [at - (at - xs[0]) * factor, at + (xs[1] - at) * factor];
      setRange(chart, next[0] <= full[0] && next[1] >= full[1] ? null : next);
    }, {passive: false});
  }

  function toolbar(chart) {
    const bar = html("div", "chart-tools", undefined, chart.element);
    if (chart.options.logToggle) {
      const label = html("label", "scale", undefined, bar);
      const box = html("input", "", undefined, label);
      box.type = "checkbox";
      label.appendChild(document.createTextNode(" log scale"));
      box.addEventListener("change", function () { chart.log = box.checked; render(chart); });
      chart.box = box;
    } else {
      chart.box = {checked: false};
    }
    for (const [text, last] of [["all", null], ["last 10", 10], ["last 50", 50]]) {
      const button = html("button", "range", text, bar);
      button.type = "button";
      button.addEventListener("click", function () {
        if (last === null) { setRange(chart, null); return; }
        const full = fullRange(chart.series, chart.options.extent);
        setRange(chart, [Math.max(full[0], full[1] - last), full[1]]);
      });
    }
  }

  let counter = 0;
  /* Draw (or redraw, keeping zoom, scale and hidden series) a chart in `element`.
     series: [{name, x: [epoch...], y: [value or null...], text: [formatted value...]}]
     options: {xTitle, yTitle, palette, height, yRange, yFromZero, logToggle, log,
               showLegend, marks: [{epoch, text}], group: a value of linkGroup(),
               extent: the full epoch range [first, last] when not the series' own} */
  function draw(element, series, options) {
    let chart = element.flowdlChart;
    if (!chart) {
      const opts = options || {};
      element.classList.add("flowdl-chart");
      chart = {
        id: ++counter, element: element, series: [], options: opts, xRange: null,
        log: opts.log !== undefined ? !!opts.log : false, hidden: new Set(), renders: 0, hovered: null,
      };
      element.flowdlChart = chart;
      toolbar(chart);
      const holder = html("div", "chart-plot", undefined, element);
      chart.svg = node("svg", {class: "chart-svg"}, holder);
      chart.tip = html("div", "chart-tip", undefined, holder);
      chart.legend = html("div", "chart-legend", undefined, element);
      listen(chart);
      if (opts.group) opts.group.members.push(chart);
    }
    chart.series = series;
    chart.options = Object.assign(chart.options, options || {});
    render(chart);
    return chart;
  }

  function linkGroup() { return {members: []}; }

  let resizing = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(function () {
      for (const chart of document.querySelectorAll(".flowdl-chart")) if (chart.flowdlChart) render(chart.flowdlChart);
    }, 100);
  });

  // The curves page: one chart per series (each with its own axis), zoom linked.
  function curvesPage() {
    const data = JSON.parse(document.getElementById("flowdl-data").textContent);
    const holder = document.getElementById("curves");
    const group = linkGroup();
    const marks = data.marks || [];
    const longest = Math.max.apply(null, data.series.map(function (s) { return s.values.length; }));
    const extent = [0.5, longest + 0.5];
    data.series.forEach(function (s, i) {
      const box = html("div", "card curve", undefined, holder);
      box.setAttribute("data-series", s.name);
      html("h3", "", s.name, box);
      const plot = html("div", "chart", undefined, box);
      draw(plot, [{name: s.name, x: s.values.map(function (_, k) { return k + 1; }), y: s.values, text: s.text}], {
        xTitle: data.x_title, yTitle: data.y_title, palette: [data.palette[i % data.palette.length]],
        height: 260, logToggle: true, log: isLoss(s.name), showLegend: false, marks: marks, group: group, extent: extent,
      });
    });
    window.flowdlCurves = {group: group, ready: true};
    return group;
  }

  return {draw: draw, plain: plain, curvesPage: curvesPage, linkGroup: linkGroup, isLoss: isLoss, colors: COLORS};
})();
