/* The monitor's dashboard. The same code draws the live page (events from /events) and
   the frozen page (events embedded by Monitor.save_html). User strings reach the page
   only through textContent and setAttribute, and the charts through flowdlCharts,
   which shows them as text. */
"use strict";
(function () {
  const boot = JSON.parse(document.getElementById("flowdl-boot").textContent);
  const state = {
    meta: null,
    epochs: new Map(),
    graph: null,
    finish: null,
    connection: boot.mode === "live" ? "connecting" : "frozen",
    renders: 0,
  };
  window.flowdlDashboard = state;
  const metricCharts = new Map();
  const metricGroup = flowdlCharts.linkGroup();
  const GIB = 1024 * 1024 * 1024;
  let scheduled = false;

  function byId(id) { return document.getElementById(id); }
  function has(object, key) { return Object.prototype.hasOwnProperty.call(object, key); }
  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function schedule() {
    if (!scheduled) {
      scheduled = true;
      setTimeout(render, 40);
    }
  }

  function handle(type, data) {
    if (type === "meta") state.meta = data;
    else if (type === "epoch") state.epochs.set(data.epoch, data);
    else if (type === "graph") state.graph = data;
    else if (type === "finish") state.finish = data;
    schedule();
  }

  function sortedEpochs() {
    return Array.from(state.epochs.values()).sort(function (a, b) { return a.epoch - b.epoch; });
  }

  function metricNames(epochs) {
    const names = [];
    const seen = new Set();
    for (const epoch of epochs) {
      for (const name of epoch.names) {
        if (!seen.has(name)) { seen.add(name); names.push(name); }
      }
    }
    return names;
  }

  function renderHeader(epochs) {
    const total = state.meta ? state.meta.total_epochs : boot.total_epochs;
    const last = epochs.length ? epochs[epochs.length - 1] : null;
    byId("epoch-count").textContent = (last ? last.epoch : 0) + "/" + total;
    byId("progress-bar").style.width = Math.min(100, 100 * (last ? last.epoch : 0) / total) + "%";
    byId("elapsed").textContent = state.finish ? state.finish.text.elapsed : last ? last.text.elapsed : "–";
    byId("eta").textContent = state.finish || (last && last.epoch >= total) ? "done" : last && last.text.eta ? last.text.eta : "–";
    byId("summary").textContent = state.finish ? state.finish.text.summary : "";
    const status = byId("status");
    if (boot.mode === "frozen") {
      status.className = state.finish ? "status finished" : "status";
      status.textContent = "snapshot" + (state.meta && state.meta.saved ? " of " + state.meta.saved : "");
    } else if (state.finish) {
      status.className = "status finished";
      status.textContent = "finished";
    } else {
      status.className = "status " + (state.connection === "live" ? "live" : state.connection === "lost" ? "lost" : "");
      status.textContent = state.connection === "lost" ? "disconnected, retrying" : state.connection;
    }
  }

  const RESOURCE_LABELS = {
    cpu_percent: "CPU", ram_percent: "RAM", ram_used_bytes: "RAM used",
    process_rss_bytes: "process", gpu_allocated_bytes: "GPU allocated",
    gpu_reserved_bytes: "GPU reserved",
  };

  function series(epochs, name, group) {
    return {
      name: group === "resources" ? RESOURCE_LABELS[name] : name,
      x: epochs.map(function (e) { return e.epoch; }),
      y: epochs.map(function (e) { return has(e[group], name) ? e[group][name] : null; }),
      text: epochs.map(function (e) { return has(e.text[group], name) ? e.text[group][name] : ""; }),
    };
  }

  function renderMetrics(epochs) {
    const names = metricNames(epochs);
    const holder = byId("metric-charts");
    if (names.length && byId("no-metrics")) byId("no-metrics").remove();
    const palette = (state.meta && state.meta.palette) || flowdlCharts.colors;
    names.forEach(function (name, index) {
      let chart = metricCharts.get(name);
      if (!chart) {
        const box = element("div", "metric-chart card");
        box.setAttribute("data-metric", name);
        box.appendChild(element("h3", "", name));
        const plot = element("div", "chart");
        box.appendChild(plot);
        holder.appendChild(box);
        chart = {plot: plot, color: palette[index % palette.length]};
        metricCharts.set(name, chart);
      }
      flowdlCharts.draw(chart.plot, [series(epochs, name, "metrics")], {
        palette: [chart.color], showLegend: false, height: 240, logToggle: true,
        log: flowdlCharts.isLoss(name), group: metricGroup,
      });
    });
  }

  function renderResources(epochs) {
    const last = epochs.length ? epochs[epochs.length - 1] : null;
    const now = byId("resource-now");
    now.replaceChildren();
    if (!last) return;
    for (const key of Object.keys(RESOURCE_LABELS)) {
      if (!has(last.text.resources, key)) continue;
      const fact = element("span", "", RESOURCE_LABELS[key] + " ");
      fact.appendChild(element("b", "", last.text.resources[key]));
      now.appendChild(fact);
    }
    const holder = byId("resource-charts");
    if (!holder.childElementCount) {
      for (const id of ["resource-load", "resource-memory"]) {
        const box = element("div", "card");
        box.appendChild(element("h3", "", id === "resource-load" ? "CPU and RAM (%)" : "memory (GiB)"));
        const plot = element("div", "chart");
        plot.id = id;
        box.appendChild(plot);
        holder.appendChild(box);
      }
    }
    const load = ["cpu_percent", "ram_percent"].filter(function (k) { return has(last.resources, k); })
      .map(function (k) { return series(epochs, k, "resources"); });
    const palette = (state.meta && state.meta.palette) || undefined;
    flowdlCharts.draw(byId("resource-load"), load, {yRange: [0, 100], height: 240, showLegend: true, palette: palette});
    const memory = ["process_rss_bytes", "gpu_allocated_bytes", "gpu_reserved_bytes"]
      .filter(function (k) { return has(last.resources, k); })
      .map(function (k) {
        const s = series(epochs, k, "resources");
        s.y = s.y.map(function (v) { return v === null ? null : v / GIB; });
        return s;
      });
    flowdlCharts.draw(byId("resource-memory"), memory, {height: 240, showLegend: true, palette: palette, yFromZero: true});
  }

  function renderGraph() {
    const panel = byId("graph-panel");
    if (!state.graph || panel.getAttribute("data-shown") === state.graph.version) return;
    panel.replaceChildren();
    panel.setAttribute("data-shown", state.graph.version);
    if (typeof state.graph.svg === "string") {
      flowdlGraphView.show(panel, state.graph.svg, state.graph.label || "");
    } else {
      if (state.graph.label) panel.appendChild(element("h3", "", state.graph.label));
      panel.appendChild(element("div", "message", state.graph.message || "no drawing"));
    }
  }

  function renderTable(epochs) {
    const names = metricNames(epochs);
    const head = byId("epoch-table").tHead;
    const row = element("tr");
    for (const title of ["epoch", "time"].concat(names)) row.appendChild(element("th", "", title));
    head.replaceChildren(row);
    const body = byId("epoch-table").tBodies[0];
    const rows = [];
    for (const epoch of epochs.slice(-500).reverse()) {
      const line = element("tr");
      line.appendChild(element("td", "", String(epoch.epoch)));
      line.appendChild(element("td", "", epoch.text.duration));
      for (const name of names) line.appendChild(element("td", "", has(epoch.text.metrics, name) ? epoch.text.metrics[name] : ""));
      rows.push(line);
    }
    body.replaceChildren.apply(body, rows);
  }

  function render() {
    scheduled = false;
    const epochs = sortedEpochs();
    renderHeader(epochs);
    renderMetrics(epochs);
    renderResources(epochs);
    renderGraph();
    renderTable(epochs);
    state.renders += 1;
  }

  if (boot.mode === "live") {
    const source = new EventSource("events");
    for (const type of ["meta", "epoch", "graph", "finish"]) {
      source.addEventListener(type, function (event) {
        handle(type, JSON.parse(event.data));
        if (type === "finish") source.close();
      });
    }
    source.onopen = function () { state.connection = "live"; schedule(); };
    source.onerror = function () {
      if (!state.finish) { state.connection = "lost"; schedule(); }
    };
  } else {
    for (const event of boot.events) handle(event.type, event.data);
  }
  schedule();
})();
