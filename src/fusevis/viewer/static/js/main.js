// Wiring: builds the panels for the current view and connects them to the data.

import { Connection, Store, maxAbs, takeToken } from "./data.js";
import { Panel, Scatter, formatNumber, shareColour, signedColour } from "./views.js";

const store = new Store();
const panels = [];          // {panel, kind, model, k}
let scatter = null;
let layoutKey = "";
let seq = 0;
let paintedSeq = -1;
let lastHover = null;
const sentAt = new Map();
const hook = {
  store, latencies: [], computeMs: [], renderMs: [], stale: 0, paintedSeq: -1, ready: false, painted: 0,
  get sent() { return connection.sent; },
};
window.fusevis = hook;

const $ = (id) => document.getElementById(id);
const connection = new Connection(onFrame, () => {
  $("readout").textContent = "disconnected (a restarted viewer needs the new URL it printed)";
}, takeToken());

function onFrame({ header, arrays }) {
  if (header.kind === "images") {
    store.applyImages(header, arrays);
    buildControls();
    buildLayout();
    renderStatic();
    hook.ready = true;
  } else if (header.kind === "maps") {
    store.applyMaps(header, arrays);
    if (store.state && store.state.in_view.includes(header.model)) {
      renderStatic();
      drawAll();
    }
    renderProgress();
  } else if (header.kind === "pixel") {
    if (header.seq < paintedSeq) { hook.stale += 1; return; }
    paintedSeq = header.seq;
    const renderStart = performance.now();
    store.pixelFrame = { header, arrays };
    store.state.pixel = header.pixel;
    store.state.pinned = header.pinned;
    renderJacobians();
    drawAll();
    renderReadout();
    hook.paintedSeq = paintedSeq;
    hook.renderMs.push(performance.now() - renderStart);
    hook.lastPixel = { header, arrays };
    hook.computeMs.push(header.compute_ms);
    const started = sentAt.get(header.seq);
    requestAnimationFrame(() => {
      hook.painted += 1;
      if (started !== undefined) hook.latencies.push(performance.now() - started);
      sentAt.delete(header.seq);
    });
  } else if (header.kind === "error") {
    $("message").textContent = header.message;
  }
}

// -- controls --------------------------------------------------------------------------
function buildControls() {
  const select = $("model");
  const state = store.state;
  if (select.options.length !== state.models.length) {
    select.replaceChildren(...state.models.map((name) => new Option(name, name)));
    $("compare-boxes").replaceChildren(...state.models.map((name) => {
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = name;
      box.addEventListener("change", () => {
        const names = [...document.querySelectorAll("#compare-boxes input:checked")].map((b) => b.value);
        send({ type: "compare", names });
      });
      label.append(box, ` ${name}`);
      return label;
    }));
  }
  select.value = state.active;
  if (state.compare.length) {
    for (const box of document.querySelectorAll("#compare-boxes input")) box.checked = state.compare.includes(box.value);
  }
  for (const radio of document.querySelectorAll("input[name=map-kind]")) radio.checked = radio.value === state.map_kind;
}

function send(message) {
  connection.send(message);
}

function sendPixelMessage(message) {
  seq += 1;
  sentAt.set(seq, performance.now());
  send({ ...message, seq });
}

$("model").addEventListener("change", (e) => send({ type: "model", name: e.target.value }));
for (const radio of document.querySelectorAll("input[name=map-kind]")) {
  radio.addEventListener("change", () => send({ type: "maps", kind: radio.value }));
}
for (const kind of ["guidance", "jacobian"]) {
  $(`gamma-${kind}`).addEventListener("input", (e) => {
    store.gamma[kind] = Number(e.target.value);
    $(`gamma-${kind}-value`).textContent = store.gamma[kind].toFixed(2);
    if (kind === "guidance") renderStatic(); else renderJacobians();
    drawAll();
  });
}
$("unpin").addEventListener("click", () => { store.state.pinned = false; send({ type: "unpin" }); renderReadout(); });
$("export-png").addEventListener("click", exportPng);
document.addEventListener("keydown", (e) => {
  if (!store.state) return;
  const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
  if (e.key === "Escape") { store.state.pinned = false; send({ type: "unpin" }); return; }
  if (store.state.pinned && moves[e.key]) {
    e.preventDefault();
    const [drow, dcol] = moves[e.key];
    sendPixelMessage({ type: "move", drow, dcol });
  }
});

// -- layout ----------------------------------------------------------------------------
function buildLayout() {
  const state = store.state;
  const key = JSON.stringify([state.in_view, state.map_kind, store.inputs.length]);
  if (key === layoutKey) return;
  layoutKey = key;
  const root = $("panels");
  root.replaceChildren();
  panels.length = 0;
  scatter = null;
  const n = store.inputs.length;
  const mapLabel = state.map_kind === "influence" ? "share" : "G";
  const mapBar = state.map_kind === "influence" ? "share" : "signed";
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
    return;
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
    scatter = new Scatter(last, "scatter", brushScatter);
  }
  for (const { panel } of panels) attachPointer(panel);
}

function attachPointer(panel) {
  let regionStart = null;
  panel.canvas.addEventListener("mousemove", (e) => {
    const pixel = panel.pixelAt(e);
    if (!pixel || store.state.pinned || regionStart) return;
    if (lastHover && lastHover[0] === pixel[0] && lastHover[1] === pixel[1]) return;
    lastHover = pixel;
    sendPixelMessage({ type: "hover", row: pixel[0], col: pixel[1] });
  });
  panel.canvas.addEventListener("mousedown", (e) => {
    if (e.shiftKey) regionStart = panel.pixelAt(e);
  });
  panel.canvas.addEventListener("mouseup", (e) => {
    const pixel = panel.pixelAt(e);
    if (regionStart && pixel) {
      selectRegion(regionStart, pixel);
      regionStart = null;
      return;
    }
    regionStart = null;
    if (pixel && !e.shiftKey) {
      store.state.pinned = true;
      sendPixelMessage({ type: "pin", row: pixel[0], col: pixel[1] });
    }
  });
}

// -- painting --------------------------------------------------------------------------
function grey(values, lo = 0, hi = 1) {
  const scale = hi > lo ? 255 / (hi - lo) : 0;
  return (i) => { const v = (values[i] - lo) * scale; return [v, v, v]; };
}

function renderStatic() {
  if (!store.state) return;
  const shape = store.shape;
  const range = store.sharedMapRange();
  const gamma = store.gamma.guidance;
  const influence = store.state.map_kind === "influence";
  for (const { panel, kind, model, k } of panels) {
    const info = store.model(model);
    if (kind === "input") panel.paint(shape, grey(store.inputs[k]));
    else if (kind === "fused") panel.paint(shape, grey(info.fused, ...info.fusedRange));
    else if (kind === "map") {
      const values = store.shownMaps(model)[k];
      if (!values) { panel.paint(shape, () => [20, 20, 24]); } else if (influence) {
        panel.paint(shape, (i) => shareColour(values[i], gamma));
      } else {
        panel.paint(shape, (i) => signedColour(values[i] / range, gamma));
      }
      panel.colorbar.update(range, gamma);
    } else if (kind === "rgb") {
      const [a, b] = store.shownMaps(model);
      const [lo, hi] = info.fusedRange;
      const span = hi > lo ? hi - lo : 1;
      panel.paint(shape, (i) => [
        a ? 255 * Math.pow(Math.min(Math.abs(a[i]) / range, 1), gamma) : 0,
        b ? 255 * Math.pow(Math.min(Math.abs(b[i]) / range, 1), gamma) : 0,
        (255 * (info.fused[i] - lo)) / span,
      ]);
    }
  }
  renderScatter();
}

function renderJacobians() {
  const frame = store.pixelFrame;
  if (!frame) return;
  const range = store.sharedJacobianRange();
  const gamma = store.gamma.jacobian;
  for (const { panel, kind, model, k } of panels) {
    if (kind !== "jacobian") continue;
    const info = frame.header.models[model];
    const values = frame.arrays[`${model}/jacobian_${k}`];
    if (!info || !values) continue;
    const ww = info.window[3] - info.window[2];
    panel.paintWindow(store.shape, info.window, (r, c) => signedColour(values.data[r * ww + c] / range, gamma));
    panel.colorbar.update(range, gamma);
  }
}

function drawAll() {
  if (!store.state) return;
  const frame = store.pixelFrame;
  for (const { panel, model } of panels) {
    const info = frame && frame.header.models[model];
    panel.draw(store.state.pixel, info ? info.window : null, store.selection);
  }
}

function renderScatter() {
  if (!scatter) return;
  const [a, b] = store.shownMaps(store.state.active);
  if (!a || !b) return;
  const influence = store.state.map_kind === "influence";
  const range = store.sharedMapRange();
  const limits = influence ? [0, 1] : [-range, range];
  const [, w] = store.shape;
  const current = store.state.pixel[0] * w + store.state.pixel[1];
  const label = influence ? "influence share 1 vs share 2" : "G1 vs G2 (every pixel)";
  scatter.draw(a, b, limits, store.selection, current, label);
}

function brushScatter([x0, y0], [x1, y1]) {
  const [a, b] = store.shownMaps(store.state.active);
  if (!a || !b) return;
  const mask = new Uint8Array(a.length);
  let count = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] >= x0 && a[i] <= x1 && b[i] >= y0 && b[i] <= y1) { mask[i] = 1; count += 1; }
  }
  store.selection = count ? mask : null;
  hook.selectionCount = count;
  renderScatter();
  drawAll();
}

function selectRegion([r0, c0], [r1, c1]) {
  const [h, w] = store.shape;
  const mask = new Uint8Array(h * w);
  let count = 0;
  for (let r = Math.min(r0, r1); r <= Math.max(r0, r1); r++) {
    for (let c = Math.min(c0, c1); c <= Math.max(c0, c1); c++) { mask[r * w + c] = 1; count += 1; }
  }
  store.selection = mask;
  hook.selectionCount = count;
  renderScatter();
  drawAll();
}

function renderReadout() {
  const state = store.state;
  const frame = store.pixelFrame;
  if (!frame) return;
  const [row, col] = state.pixel;
  const lines = [`pixel (row ${row}, col ${col})${state.pinned ? " pinned" : ""}`];
  for (const [name, info] of Object.entries(frame.header.models)) {
    const g = info.guidance_at_pixel.map((v, k) => `G${k + 1} ${formatNumber(v)}`).join("  ");
    const j = info.jacobian_at_pixel.map((v, k) => `J${k + 1}(p) ${formatNumber(v)}`).join("  ");
    lines.push(`${name}: fused ${formatNumber(info.fused)}  ${g}  ${j}  [${info.method}]`);
  }
  $("readout").textContent = lines.join("\n");
  $("export-npz").href = `/api/export.npz?model=${encodeURIComponent(state.in_view[0])}&row=${row}&col=${col}`;
  $("unpin").disabled = !state.pinned;
}

function renderProgress() {
  const bars = [];
  for (const name of store.state ? store.state.in_view : []) {
    for (const [kind, maps] of Object.entries(store.model(name).maps)) {
      if (maps.finished && !maps.error) continue;
      const div = document.createElement("div");
      div.className = "bar";
      const bar = document.createElement("progress");
      bar.max = maps.total || 1;
      bar.value = maps.done;
      div.append(`${kind} maps ${name}`, bar,
        maps.error ? `failed: ${maps.error}` : `${maps.done}/${maps.total || "?"} passes`);
      bars.push(div);
    }
  }
  $("progress").replaceChildren(...bars);
}

function exportPng() {
  const gap = 8;
  const rows = [...document.querySelectorAll("#panels .row")].map((row) => [...row.querySelectorAll("canvas.image, canvas.scatter")]);
  const width = Math.max(...rows.map((r) => r.reduce((s, c) => s + c.width + gap, gap)));
  const height = rows.reduce((s, r) => s + Math.max(...r.map((c) => c.height)) + gap, gap);
  const out = document.createElement("canvas");
  out.width = width;
  out.height = height;
  const context = out.getContext("2d");
  context.fillStyle = "#16181d";
  context.fillRect(0, 0, width, height);
  let y = gap;
  for (const row of rows) {
    let x = gap;
    for (const canvas of row) { context.drawImage(canvas, x, y); x += canvas.width + gap; }
    y += Math.max(...row.map((c) => c.height)) + gap;
  }
  const link = document.createElement("a");
  link.download = `fusevis-${store.state.pixel[0]}-${store.state.pixel[1]}.png`;
  link.href = out.toDataURL("image/png");
  hook.lastExport = link.href.length;
  link.click();
}

hook.maxAbs = maxAbs;
