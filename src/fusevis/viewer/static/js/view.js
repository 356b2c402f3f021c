// The viewer's behaviour, whatever carries its frames and messages: frames in (onFrame),
// messages out (send). The page (main.js: elements by id, a websocket) and the notebook
// widget (fusevis/notebook/static/widget.js: elements inside the widget, widget messages)
// each build their elements and hand them here.

import { Store, maxAbs } from "./data.js";
import { exportPng } from "./export.js";
import { buildLayout } from "./layout.js";
import { Painter } from "./paint.js";
import { attachPointer, brushMask, regionMask } from "./selection.js";
import { Status } from "./status.js";

const MOVES = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };

/**
 * Wire the viewer to its elements.
 *
 * ui: { model (select), compareBoxes, kinds (radios), gamma: { guidance, jacobian } each
 *       { input, output }, unpin, png (buttons), readout, activity, progress, message, panels }
 * options:
 *   send(message)       the transport;
 *   keys                the element whose keydown moves a pinned pixel (default: document);
 *   isolated            keys that act stop there (a notebook would move between cells);
 *   onRegion(from, to)  a shift-drag on a panel (default: select the rectangle here);
 *   afterImages()       after an images frame;
 *   afterPixel(header)  after a pixel is painted.
 * Returns { hook, store, onFrame, select }: hook is what browser tests and benchmarks read.
 */
export function createView(ui, options) {
  const store = new Store();
  let layout = null;
  let seq = 0;
  let paintedSeq = -1;
  const sentAt = new Map();
  const send = (message) => options.send(message);
  const painter = new Painter(store, () => layout || { panels: [], scatter: null });
  const status = new Status(store, { readout: ui.readout, activity: ui.activity, progress: ui.progress }, {
    onCompute: (model, kind, estimate) => send({ type: "compute_maps", model, kind, estimate }),
  });
  const hook = {
    store, latencies: [], computeMs: [], renderMs: [], stale: 0, paintedSeq: -1, ready: false, painted: 0,
    computing: null, paintedPixels: [], maxAbs,
  };

  function onFrame({ header, arrays }) {
    if (header.kind === "images") {
      store.applyImages(header, arrays);
      buildControls();
      relayout();
      if (options.afterImages) options.afterImages();
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
    if (options.afterPixel) options.afterPixel(header);
    hook.paintedSeq = paintedSeq;
    hook.renderMs.push(performance.now() - renderStart);
    hook.lastPixel = { header, arrays };
    hook.paintedPixels.push(header.pixel.join());
    if (hook.paintedPixels.length > 1000) hook.paintedPixels.splice(0, 500);
    hook.computeMs.push(header.compute_ms);
    const started = sentAt.get(header.seq);
    requestAnimationFrame(() => {
      hook.painted += 1;
      if (started !== undefined) hook.latencies.push(performance.now() - started);
      sentAt.delete(header.seq);
    });
  }

  function sendPixelMessage(message) {
    seq += 1;
    sentAt.set(seq, performance.now());
    send({ ...message, seq });
  }

  // -- controls --------------------------------------------------------------------------
  function buildControls() {
    const state = store.state;
    if (ui.model.options.length !== state.models.length) {
      ui.model.replaceChildren(...state.models.map((name) => new Option(name, name)));
      ui.compareBoxes.replaceChildren(...state.models.map((name) => {
        const label = document.createElement("label");
        const box = document.createElement("input");
        box.type = "checkbox";
        box.value = name;
        box.addEventListener("change", () => {
          const names = [...ui.compareBoxes.querySelectorAll("input:checked")].map((b) => b.value);
          send({ type: "compare", names });
        });
        label.append(box, ` ${name}`);
        return label;
      }));
    }
    ui.model.value = state.active;
    if (state.compare.length) {
      for (const box of ui.compareBoxes.querySelectorAll("input")) box.checked = state.compare.includes(box.value);
    }
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
  (options.keys || document).addEventListener("keydown", (e) => {
    if (!store.state) return;
    if (e.key === "Escape") {
      unpin();
      if (options.isolated) e.stopPropagation();
      return;
    }
    if (store.state.pinned && MOVES[e.key]) {
      e.preventDefault();
      if (options.isolated) e.stopPropagation();
      const [drow, dcol] = MOVES[e.key];
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
        onRegion: options.onRegion || ((from, to) => select(regionMask(from, to, store.shape))),
      });
    }
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

  return { hook, store, onFrame, select };
}
