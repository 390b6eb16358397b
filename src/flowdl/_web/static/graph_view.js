/* The dashboard's graph panel: the model's SVG drawing itself, inlined, with zoom (wheel,
   buttons), pan (drag) and a tooltip per node built from what the drawing carries (its
   <title>, the module described in the link title, the label's lines: parameters, tags,
   and the output shape and time when profiled). The SVG is parsed as XML and rebuilt
   from an allow-list of elements and attributes: no script, handler or link survives. */
"use strict";
window.flowdlGraphView = (function () {
  const NS = "http://www.w3.org/2000/svg";
  const XLINK = "http://www.w3.org/1999/xlink";
  const ELEMENTS = new Set(["svg", "g", "title", "path", "polygon", "polyline", "ellipse", "circle",
    "rect", "line", "text", "tspan", "a", "defs", "linearGradient", "radialGradient", "stop"]);
  const ATTRIBUTES = new Set(["id", "class", "x", "y", "x1", "x2", "y1", "y2", "cx", "cy", "r", "rx", "ry",
    "width", "height", "d", "points", "fill", "stroke", "stroke-width", "stroke-dasharray", "stroke-opacity",
    "fill-opacity", "opacity", "transform", "viewBox", "text-anchor", "font-family", "font-size", "font-weight",
    "font-style", "offset", "stop-color", "stop-opacity", "gradientUnits", "gradientTransform", "x1", "y1",
    "preserveAspectRatio", "dominant-baseline"]);

  /* A clean copy of the parsed element `source` (null for anything not allowed). */
  function clean(source) {
    if (source.nodeType === 3) return document.createTextNode(source.nodeValue);
    if (source.nodeType !== 1 || source.namespaceURI !== NS || !ELEMENTS.has(source.localName)) return null;
    const copy = document.createElementNS(NS, source.localName === "a" ? "g" : source.localName);
    for (const attribute of Array.from(source.attributes)) {
      if (attribute.namespaceURI === null && ATTRIBUTES.has(attribute.localName)) {
        copy.setAttribute(attribute.localName, attribute.value);
      } else if (attribute.namespaceURI === XLINK && attribute.localName === "title") {
        copy.setAttribute("data-tooltip", attribute.value);  // Graphviz's tooltip
      }
    }
    for (const child of Array.from(source.childNodes)) {
      const kept = clean(child);
      if (kept) copy.appendChild(kept);
    }
    return copy;
  }

  function parse(text) {
    const parsed = new DOMParser().parseFromString(text, "image/svg+xml");
    const root = parsed.documentElement;
    if (!root || root.localName !== "svg" || parsed.getElementsByTagName("parsererror").length) return null;
    return clean(root);
  }

  /* The tooltip of one Graphviz node: name, module, then the label's other lines. */
  function describe(group) {
    const lines = [];
    const title = group.querySelector(":scope > title");
    const name = title ? title.textContent : "";
    const linked = group.querySelector("[data-tooltip]");
    const detail = linked ? linked.getAttribute("data-tooltip").split("\n") : [];
    if (detail.length) lines.push(detail[0]); else if (name) lines.push(name);
    const texts = Array.from(group.querySelectorAll("text")).map(function (t) { return t.textContent; });
    for (const text of texts.slice(1)) lines.push(text);
    for (const more of detail.slice(1)) if (lines.indexOf(more) < 0) lines.push(more);
    return lines.join("\n");
  }

  function show(panel, svgText, label) {
    panel.replaceChildren();
    const svg = parse(svgText);
    if (!svg) {
      const message = document.createElement("div");
      message.className = "message";
      message.textContent = "the drawing could not be read";
      panel.appendChild(message);
      return null;
    }
    const tools = document.createElement("div");
    tools.className = "graph-tools";
    if (label) {
      const name = document.createElement("b");
      name.textContent = label;
      name.style.marginRight = "auto";
      tools.appendChild(name);
    }
    const hint = document.createElement("span");
    hint.textContent = "drag to pan, wheel to zoom, hover a node";
    tools.appendChild(hint);
    const view = document.createElement("div");
    view.className = "graph-view";
    const tip = document.createElement("div");
    tip.className = "graph-tip";
    panel.appendChild(tools);
    panel.appendChild(view);
    view.appendChild(svg);
    view.appendChild(tip);
    const state = {scale: 1, x: 0, y: 0, svg: svg, view: view, tip: tip};
    const box = svg.viewBox && svg.viewBox.baseVal && svg.viewBox.baseVal.width ? svg.viewBox.baseVal : null;
    const width = box ? box.width : svg.getBBox().width;
    const height = box ? box.height : svg.getBBox().height;
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    function apply() { svg.style.transform = "translate(" + state.x + "px," + state.y + "px) scale(" + state.scale + ")"; }
    function fit() {
      const w = view.clientWidth || 800;
      const h = view.clientHeight || 600;
      state.scale = Math.min(w / width, h / height, 1.5);
      state.x = (w - width * state.scale) / 2;
      state.y = Math.max(0, (h - height * state.scale) / 2);
      apply();
    }
    function zoom(factor, cx, cy) {
      const next = Math.max(0.05, Math.min(20, state.scale * factor));
      state.x = cx - (cx - state.x) * next / state.scale;
      state.y = cy - (cy - state.y) * next / state.scale;
      state.scale = next;
      apply();
    }
    for (const [text, act] of [["fit", fit], ["+", function () { zoom(1.25, view.clientWidth / 2, view.clientHeight / 2); }],
      ["−", function () { zoom(0.8, view.clientWidth / 2, view.clientHeight / 2); }]]) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = text;
      button.addEventListener("click", act);
      tools.appendChild(button);
    }
    view.addEventListener("wheel", function (event) {
      event.preventDefault();
      const rect = view.getBoundingClientRect();
      zoom(event.deltaY < 0 ? 1.2 : 1 / 1.2, event.clientX - rect.left, event.clientY - rect.top);
    }, {passive: false});
    let drag = null;
    view.addEventListener("mousedown", function (event) { drag = [event.clientX - state.x, event.clientY - state.y]; event.preventDefault(); });
    window.addEventListener("mouseup", function () { drag = null; });
    view.addEventListener("mousemove", function (event) {
      if (drag) { state.x = event.clientX - drag[0]; state.y = event.clientY - drag[1]; apply(); }
      const rect = view.getBoundingClientRect();
      const target = event.target.closest ? event.target.closest("g.node") : null;
      if (!target) { tip.style.display = "none"; return; }
      tip.textContent = describe(target);
      tip.style.display = "block";
      tip.style.left = Math.min(event.clientX - rect.left + 14, rect.width - tip.offsetWidth - 4) + "px";
      tip.style.top = Math.min(event.clientY - rect.top + 14, rect.height - tip.offsetHeight - 4) + "px";
    });
    view.addEventListener("mouseleave", function () { tip.style.display = "none"; });
    view.addEventListener("dblclick", fit);
    fit();
    state.fit = fit;
    state.zoom = zoom;
    state.describe = describe;
    panel.flowdlGraph = state;
    return state;
  }

  return {show: show, parse: parse, describe: describe};
})();
