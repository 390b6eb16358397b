/* flowdl's line charts, drawn with plotly.js: shared by the curves page and the dashboard.
   Every user string (series names, titles) is shown as text, never read as markup. */
"use strict";
window.flowdlCharts = (function () {
  // plotly reads a few HTML-like tags in names and titles; entities keep them literal.
  function plain(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  const scaleButtons = {
    type: "buttons", direction: "left", showactive: true,
    x: 1, xanchor: "right", y: 1.02, yanchor: "bottom", pad: {r: 0, t: 0},
    buttons: [
      {label: "linear", method: "relayout", args: [{"yaxis.type": "linear"}]},
      {label: "log", method: "relayout", args: [{"yaxis.type": "log"}]},
    ],
  };

  /* Draw (or redraw) line charts in `element`.
     series: [{name, x: [epoch...], y: [value or null...], text: [formatted value...]}]
     options: {xTitle, yTitle, palette, height, yRange, logToggle, showLegend} */
  function draw(element, series, options) {
    const opts = options || {};
    const colors = opts.palette && opts.palette.length ? opts.palette : ["#636EFA"];
    let longest = 0;
    const traces = series.map(function (s, i) {
      longest = Math.max(longest, s.x.length);
      return {
        type: "scatter",
        mode: s.x.length > 40 ? "lines" : "lines+markers",
        name: plain(s.name),
        x: s.x,
        y: s.y,
        customdata: s.text,
        hovertemplate: "%{fullData.name}: %{customdata}<extra></extra>",
        line: {color: colors[i % colors.length], width: 2},
        marker: {size: 5},
        connectgaps: false,
      };
    });
    const many = series.length > 8;
    const layout = {
      height: opts.height || 300,
      margin: {l: 64, r: many ? 8 : 16, t: opts.logToggle ? 36 : 12, b: series.length > 1 && !many ? 80 : 48},
      paper_bgcolor: "#ffffff",
      plot_bgcolor: "#ffffff",
      font: {family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12},
      showlegend: opts.showLegend !== undefined ? opts.showLegend : series.length > 1,
      legend: many ? {orientation: "v"} : {orientation: "h", y: -0.28, x: 0},
      hovermode: series.length <= 12 ? "x unified" : "closest",
      xaxis: {
        title: {text: plain(opts.xTitle || "Epoch")},
        tickformat: "d",
        dtick: longest <= 12 ? 1 : undefined,
        gridcolor: "#e5e7eb",
        zeroline: false,
      },
      yaxis: {
        title: {text: plain(opts.yTitle || "")},
        gridcolor: "#e5e7eb",
        zeroline: false,
        range: opts.yRange,
      },
    };
    if (opts.logToggle) layout.updatemenus = [scaleButtons];
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

  return {draw: draw, plain: plain, curvesPage: curvesPage};
})();
