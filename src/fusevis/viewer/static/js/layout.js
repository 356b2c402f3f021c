// Layout: which panels the current view has, built into the page (no painting here).

import { Panel, Scatter } from "./views.js";

/**
 * The panels of the state's view: `{key, panels: [{panel, kind, model, k}], scatter}`.
 * Returns `previous` when the view (models in view, map kind, input count) is unchanged,
 * otherwise builds new panels into `root`; `onBrush(from, to)` is the scatter's brush.
 */
export function buildLayout(store, root, previous, onBrush) {
  const state = store.state;
  const key = JSON.stringify([state.in_view, state.map_kind, store.inputs.length, store.shape]);
  if (previous && previous.key === key) return previous;
  root.replaceChildren();
  const panels = [];
  let scatter = null;
  const n = store.inputs.length;
  const influence = state.map_kind === "influence";
  const mapLabel = influence ? "share" : "G";
  const mapBar = influence ? "share" : "signed";
  const row = (label) => {
    const div = document.createElement("div");
    div.className = "row";
    if (label) {
      const span = document.createElement("span");
      span.className = "row-label";
      span.textContent = label;
      div.append(span);
    }
    root.append(div);
    return div;
  };
  const add = (parent, title, kind, model, k, options) => {
    panels.push({ panel: new Panel(parent, title, options), kind, model, k });
  };
  if (state.compare.length) {
    const inputs = row("inputs");
    for (let k = 0; k < n; k++) add(inputs, `input ${k + 1}`, "input", state.compare[0], k, {});
    for (const name of state.compare) {
      const line = row(name);
      add(line, `${name} fused`, "fused", name, 0, {});
      for (let k = 0; k < n; k++) add(line, `${name} ${mapLabel}${k + 1}`, "map", name, k, { colorbar: mapBar });
      for (let k = 0; k < n; k++) add(line, `${name} J${k + 1}`, "jacobian", name, k, { colorbar: "signed" });
    }
    return { key, panels, scatter };
  }
  const name = state.active;
  for (let k = 0; k < n; k++) {
    const line = row(`input ${k + 1}`);
    add(line, `input ${k + 1}`, "input", name, k, {});
    add(line, `${mapLabel}${k + 1} (${name})`, "map", name, k, { colorbar: mapBar });
    add(line, `J${k + 1} (${name})`, "jacobian", name, k, { colorbar: "signed" });
  }
  const last = row("fused");
  add(last, `fused (${name})`, "fused", name, 0, {});
  if (n >= 2) {
    add(last, `${state.map_kind} RGB: R=${mapLabel}1 G=${mapLabel}2 B=fused`, "rgb", name, 0, {});
    scatter = new Scatter(last, "scatter", onBrush);
  }
  return { key, panels, scatter };
}
