// The notebook widget: the viewer's panels over widget messages instead of a websocket.
// It reuses the viewer's ES modules (data.js decodes the same binary frames into the same
// Store, layout.js/paint.js/views.js build and colour the same panels, selection.js and
// status.js handle the pointer and the status lines, export.js the PNG); only the wiring
// differs from the viewer's main.js: elements are found inside the widget, not by id, and
// the frames arrive as widget buffers (`msg:custom`), the messages leave by `model.send`.

import { Store, decodeFrame, maxAbs } from "./data.js";
import { exportPng } from "./export.js";
import { buildLayout } from "./layout.js";
import { Painter } from "./paint.js";
import { attachPointer, brushMask, regionMask } from "./selection.js";
import { Status } from "./status.js";

let widgets = 0;

function make(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}

/** The widget's controls, status lines and panel area (the viewer's index.html, scoped). */
function buildShell(root, id) {
  root.classList.add("fusevis-widget");
  root.tabIndex = 0;
  const ui = {};
  ui.model = make("select", { className: "fv-model", title: "The network shown in single mode" });
  ui.compareBoxes = make("span", { className: "fv-compare-boxes" });
  const compare = make("fieldset", { title: "Tick 2-4 networks to compare them side by side on the same pixel" },
    make("legend", { textContent: "side by side" }), ui.compareBoxes);
  const kinds = make("fieldset", {}, make("legend", { textContent: "maps" }));
  ui.kinds = [];
  for (const [value, text] of [["guidance", "guidance"], ["influence", "influence share"]]) {
    const radio = make("input", { type: "radio", name: `fv-map-kind-${id}`, value, checked: value === "guidance" });
    ui.kinds.push(radio);
    kinds.append(make("label", {}, radio, ` ${text}`));
  }
  ui.gamma = {};
  const sliders = [];
  for (const [kind, label, value] of [["guidance", "guidance γ", "1"], ["jacobian", "Jacobian γ", "0.5"]]) {
    const input = make("input", { type: "range", min: "0.1", max: "3", step: "0.05", value, className: `fv-gamma-${kind}` });
    const output = make("output", { textContent: Number(value).toFixed(2) });
    ui.gamma[kind] = { input, output };
    sliders.push(make("label", {}, `${label} `, input, output));
  }
  ui.unpin = make("button", { type: "button", textContent: "unpin", title: "Follow the mouse again (Esc)", className: "fv-unpin" });
  ui.png = make("button", { type: "button", textContent: "export PNG", className: "fv-export-png" });
  ui.npz = make("button", { type: "button", textContent: "export .npz", className: "fv-export-npz" });
  const header = make("div", { className: "fv-header" }, make("strong", { textContent: "FuseVis" }),
    make("label", {}, "network ", ui.model), compare, kinds, ...sliders, ui.unpin, ui.png, ui.npz);
  ui.readout = make("div", { className: "fv-readout", textContent: "waiting for the kernel…" });
  ui.activity = make("div", { className: "fv-activity" });
  ui.progress = make("div", { className: "fv-progress" });
  ui.message = make("div", { className: "fv-message", role: "alert" });
  const status = make("div", { className: "fv-status" }, ui.readout,
    make("div", { className: "fv-work" }, ui.activity, ui.progress, ui.message));
  ui.panels = make("div", { className: "fv-panels" });
  const footer = make("div", { className: "fv-footer", textContent:
    "Hover a pixel of any image; click to pin it, then move it with the arrow keys. " +
    "Shift-drag on an image to select a region (w.region); drag on the scatter plot to brush points." });
  root.replaceChildren(header, status, ui.panels, footer);
  return ui;
}

/** A widget buffer (DataView or ArrayBuffer) as an ArrayBuffer that starts at the frame. */
function arrayBuffer(buffer) {
  if (buffer instanceof ArrayBuffer) return buffer;
  if (buffer.byteOffset === 0 && buffer.byteLength === buffer.buffer.byteLength) return buffer.buffer;
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength).slice().buffer;
}

/** Show the widget in `el`; returns the clean-up anywidget calls when the view goes away. */
export function mount(model, el) {
  widgets += 1;
  const ui = buildShell(el, widgets);
  const store = new Store();
  let layout = null;
  let seq = 0;
  let paintedSeq = -1;
  const sentAt = new Map();
  const painter = new Painter(store, () => layout || { panels: [], scatter: null });
  const status = new Status(store, { readout: ui.readout, activity: ui.activity, progress: ui.progress }, {
    onCompute: (name, kind, estimate) => send({ type: "compute_maps", model: name, kind, estimate }),
  });

  // what the browser tests and the benchmark read (as the viewer's window.fusevis)
  const hook = {
    store, latencies: [], computeMs: [], renderMs: [], stale: 0, paintedSeq: -1, ready: false, painted: 0,
    computing: null, paintedPixels: [], maxAbs, sent: 0, root: el, downloads: [], kernelMs: [],
  };
  el.fusevis = hook;
  window.fusevisWidgets = window.fusevisWidgets || [];
  window.fusevisWidgets.push(hook);

  function send(message) {
    hook.sent += 1;
    model.send(message);
  }

  function sendPixelMessage(message) {
    seq += 1;
    sentAt.set(seq, performance.now());
    send({ ...message, seq });
  }

  function onCustom(content, buffers) {
    if (content && content.frame) onFrame(decodeFrame(arrayBuffer(buffers[0])));
    else if (content && content.download) download(content.download, buffers[0]);
  }

  function onFrame({ header, arrays }) {
    if (header.kind === "images") {
      store.applyImages(header, arrays);
      buildControls();
      relayout();
      showRegion();
      painter.renderStatic();
      hook.ready = true;
    } else if (header.kind === "maps") {
      store.applyMaps(header, arrays);
      if (store.state && store.state.in_view.includes(header.model)) {
        painter.renderStatic();
        painter.drawAll();
      }
      status.renderProgress();
    } else if (header.kind === "progress") {
      store.applyProgress(header);
      status.renderProgress();
    } else if (header.kind === "computing") {
      if (header.seq < paintedSeq) return;
      hook.computing = header;
      status.showComputing(header);
    } else if (header.kind === "pixel") {
      onPixel(header, arrays);
    } else if (header.kind === "error") {
      ui.message.textContent = header.message;
    }
  }

  function onPixel(header, arrays) {
    if (!store.state) return;
    if (header.seq < paintedSeq) { hook.stale += 1; return; }
    paintedSeq = header.seq;
    const renderStart = performance.now();
    store.pixelFrame = { header, arrays };
    store.state.pixel = header.pixel;
    store.state.pinned = header.pinned;
    painter.renderJacobians();
    painter.drawAll();
    status.answered(header.seq);
    status.renderReadout();
    ui.unpin.disabled = !store.state.pinned;
    hook.paintedSeq = paintedSeq;
    hook.renderMs.push(performance.now() - renderStart);
    hook.lastPixel = { header, arrays };
    hook.paintedPixels.push(header.pixel.join());
    if (hook.paintedPixels.length > 1000) hook.paintedPixels.splice(0, 500);
    hook.computeMs.push(header.compute_ms);
    hook.kernelMs.push(header.kernel_ms);  // the kernel's time, message in to frame out
    const started = sentAt.get(header.seq);
    requestAnimationFrame(() => {
      hook.painted += 1;
      if (started !== undefined) hook.latencies.push(performance.now() - started);
      sentAt.delete(header.seq);
    });
  }

  function download(filename, buffer) {
    const blob = new Blob([arrayBuffer(buffer)], { type: "application/octet-stream" });
    const link = make("a", { download: filename, href: URL.createObjectURL(blob) });
    hook.downloads.push({ filename, bytes: blob.size });
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  }

  // -- controls --------------------------------------------------------------------------
  function buildControls() {
    const state = store.state;
    if (ui.model.options.length !== state.models.length) {
      ui.model.replaceChildren(...state.models.map((name) => new Option(name, name)));
      ui.compareBoxes.replaceChildren(...state.models.map((name) => {
        const box = make("input", { type: "checkbox", value: name });
        box.addEventListener("change", () => {
          const names = [...ui.compareBoxes.querySelectorAll("input:checked")].map((b) => b.value);
          send({ type: "compare", names });
        });
        return make("label", {}, box, ` ${name}`);
      }));
    }
    ui.model.value = state.active;
    for (const box of ui.compareBoxes.querySelectorAll("input")) box.checked = state.compare.includes(box.value);
    for (const radio of ui.kinds) radio.checked = radio.value === state.map_kind;
  }

  ui.model.addEventListener("change", (e) => send({ type: "model", name: e.target.value }));
  for (const radio of ui.kinds) radio.addEventListener("change", () => send({ type: "maps", kind: radio.value }));
  for (const [kind, { input, output }] of Object.entries(ui.gamma)) {
    input.addEventListener("input", () => {  // gamma recolours in the page: no round trip
      store.gamma[kind] = Number(input.value);
      output.textContent = store.gamma[kind].toFixed(2);
      if (kind === "guidance") painter.renderStatic(); else painter.renderJacobians();
      painter.drawAll();
    });
  }
  function unpin() {
    if (!store.state) return;
    store.state.pinned = false;
    send({ type: "unpin" });
    ui.unpin.disabled = true;
    status.renderReadout();
  }
  ui.unpin.addEventListener("click", unpin);
  ui.png.addEventListener("click", () => { hook.lastExport = exportPng(ui.panels, store.state.pixel); });
  ui.npz.addEventListener("click", () => send({ type: "export_npz" }));
  el.addEventListener("keydown", (e) => {
    if (!store.state) return;
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    if (e.key === "Escape") { unpin(); e.stopPropagation(); return; }
    if (store.state.pinned && moves[e.key]) {
      e.preventDefault();
      e.stopPropagation();  // the notebook would move between cells
      const [drow, dcol] = moves[e.key];
      sendPixelMessage({ type: "move", drow, dcol });
    }
  });

  // -- layout and selection --------------------------------------------------------------
  function relayout() {
    const previous = layout;
    layout = buildLayout(store, ui.panels, previous, brushScatter);
    if (layout === previous) return;
    for (const { panel } of layout.panels) {
      attachPointer(panel, {
        isPinned: () => store.state.pinned,
        onHover: ([row, col]) => sendPixelMessage({ type: "hover", row, col }),
        onPin: ([row, col]) => {
          store.state.pinned = true;
          sendPixelMessage({ type: "pin", row, col });
        },
        onRegion: ([r0, c0], [r1, c1]) => {  // w.region: (top, bottom, left, right), ends excluded
          // sent as a message (as hovers are), which the kernel turns into w.region
          send({ type: "region", region: [Math.min(r0, r1), Math.max(r0, r1) + 1, Math.min(c0, c1), Math.max(c0, c1) + 1] });
        },
      });
    }
  }

  /** Tint the region Python holds (`w.region`), or clear it. */
  function showRegion() {
    const region = model.get("region");
    hook.region = region;
    if (!store.state) return;
    if (!region) { select({ mask: null, count: 0 }); return; }
    const [top, bottom, left, right] = region;
    select(regionMask([top, left], [bottom - 1, right - 1], store.shape));
  }

  function brushScatter(from, to) {
    const [a, b] = store.shownMaps(store.state.active);
    if (a && b) select(brushMask(a, b, from, to));
  }

  function select({ mask, count }) {
    store.selection = mask;
    hook.selectionCount = count;
    painter.renderScatter();
    painter.drawAll();
  }

  // the notebook must not see the widget's clicks: a shift-click would extend its cell
  // selection (and "run cell" would then run every selected cell)
  for (const type of ["mousedown", "mouseup", "click", "dblclick"]) {
    el.addEventListener(type, (e) => e.stopPropagation());
  }

  model.on("msg:custom", onCustom);
  model.on("change:region", showRegion);
  send({ type: "ready" });
  return () => {
    model.off("msg:custom", onCustom);
    model.off("change:region", showRegion);
    const index = window.fusevisWidgets.indexOf(hook);
    if (index >= 0) window.fusevisWidgets.splice(index, 1);
  };
}
