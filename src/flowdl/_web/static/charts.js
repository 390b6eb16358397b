/* flowdl's line charts, drawn with plotly.js: shared by the curves page and the dashboard.
   Every user string (series names, titles) is shown as text, never read as markup. */
"use strict";
window.flowdlCharts = (function () {
  // plotly reads a few HTML-like tags in names and titles; entities keep them literal.
  function plain(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  const DASHES = ["solid", "dash", "dot", "dashdot"];

  /* A "log scale" checkbox before `element`; the choice survives redraws. */
  function scaleToggle(element) {
    if (element.previousElementSibling && element.previousElementSibling.className === "scale") return;
    const label = document.createElement("label");
    label.className = "scale";
    const box = document.createElement("input");
    box.type = "checkbox";
    box.addEventListener("change", function () {
      element.setAttribute("data-scale", box.checked ? "log" : "linear");
      Plotly.relayout(element, {"yaxis.type": box.checked ? "log" : "linear"});
    });
    label.appendChild(box);
    label.appendChild(document.createTextNode(" log scale"));
    element.parentNode.insertBefore(label, element);
  }

  /* Draw (or redraw) line charts in `element`.
     series: [{name, x: [epoch...], y: [value or null...], text: [formatted value...]}]
     options: {xTitle, yTitle, palette, height, yRange, yFromZero, logToggle, showLegend} */
  function draw(element, series, options) {
    const opts = options || {};
    const colors = opts.palette && opts.palette.length ? opts.palette : ["#636EFA"];
    let longest = 0;
    let first = Infinity;
    let last = -Infinity;
    const traces = series.map(function (s, i) {
      longest = Math.max(longest, s.x.length);
      for (const x of s.x) { first = Math.min(first, x); last = Math.max(last, x); }
      return {
        type: "scatter",
        mode: s.x.length > 40 ? "lines" : "lines+markers",
        name: plain(s.name),
        x: s.x,
        y: s.y,
        customdata: s.text,
        hovertemplate: "%{fullData.name}: %{customdata}<extra></extra>",
        // past the palette, the colours come back dashed, then dotted
        line: {color: colors[i % colors.length], width: 2, dash: DASHES[Math.floor(i / colors.length) % DASHES.length]},
        marker: {size: 5},
        connectgaps: false,
      };
    });
    const many = series.length > 8;
    const legend = opts.showLegend !== undefined ? opts.showLegend : series.length > 1;
    if (opts.logToggle) scaleToggle(element);
    const layout = {
      height: opts.height || 300,
      margin: {l: 64, r: 16, t: legend && !many ? 36 : 12, b: 48},
      paper_bgcolor: "#ffffff",
      plot_bgcolor: "#ffffff",
      font: {family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12},
      showlegend: legend,
      legend: many ? {orientation: "v"} : {orientation: "h", x: 0, xanchor: "left", y: 1, yanchor: "bottom"},
      uirevision: "keep",
      hovermode: series.length <= 12 ? "x unified" : "closest",
      xaxis: {
        title: {text: plain(opts.xTitle || "Epoch")},
        tickformat: "d",
        dtick: longest <= 12 ? 1 : undefined,
        // epochs count from 1: no tick at 0, half an epoch of room on each side
        range: first <= last ? [first - 0.5, last + 0.5] : undefined,
        gridcolor: "#e5e7eb",
        zeroline: false,
      },
      yaxis: {
        title: {text: plain(opts.yTitle || "")},
        gridcolor: "#e5e7eb",
        zeroline: false,
        range: opts.yRange,
        rangemode: opts.yFromZero ? "tozero" : "normal",
        type: element.getAttribute("data-scale") === "log" ? "log" : "linear",
      },
    };
    return Plotly.react(element, traces, layout, {displaylogo: false, responsive: true});
  }

  // The curves page: one chart with every series of the embedded data.
  function curvesPage() {
    const data = JSON.parse(document.getElementById("flowdl-data").textContent);
    const series = data.series.map(function (s) {
      return {name: s.name, x: s.values.map(function (_, k) { return k + 1; }), y: s.values, text: s.text};
    });
    return draw(document.getElementById("curves"), series, {
      xTitle: data.x_title, yTitle: data.y_title, palette: data.palette, height: 520, logToggle: true,
    });
  }

  return {draw: draw, plain: plain, curvesPage: curvesPage, scaleToggle: scaleToggle};
})();
