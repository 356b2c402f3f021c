// The viewer's behaviour, whatever carries its frames and messages: frames in (onFrame),
// messages out (send). The page (main.js: elements by id, a websocket) and the notebook
// widget (fusevis/notebook/static/widget.js: elements inside the widget, widget messages)
// each build their elements and hand them here.

import { Store, maxAbs, sliceKey } from "./data.js";
import { exportPng } from "./export.js";
import { buildLayout } from "./layout.js";
import { Painter } from "./paint.js";
import { attachPointer, brushMask, regionMask } from "./selection.js";
import { Status } from "./status.js";

const MOVES = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
// keys that step through a volume's slices (Alt+arrow: laptops without PageUp)
const SLICE_STEPS = { PageUp: 1, PageDown: -1 };
const ALT_SLICE_STEPS = { ArrowUp: 1, ArrowDown: -1 };

/**
 * Wire the viewer to its elements.
 *
 * ui: { model (select), compareBoxes, kinds (radios), gamma: { guidance, jacobian } each
 *       { input, output }, slice: { controls, axis (select), input (range), output } (a
 *       volume's slice; hidden for 2-D images), unpin, png (buttons), readout, activity,
 *       progress, message, panels }
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
    computing: null, paintedPixels: [], maxAbs, slice: "", blank: null, slicesShown: 0,
    sliceTimes: [],  // per slice asked for: ms to its fused slice painted, to its pixel painted
  };
  let wantedSlice = null;  // the slice last asked for, until its images arrive
  let sliceAsked = null;   // { key, at, images, pixel } of the latest slice asked for

  /** Time a slice's first images and pixel answer from when it was asked for. */
  function timeSlice(what) {
    const asked = sliceAsked;
    if (!asked || asked.key !== store.sliceKey || asked[what] !== undefined) return;
    asked[what] = null;
    requestAnimationFrame(() => {
      asked[what] = performance.now() - asked.at;
      if (asked.images !== undefined && asked.pixel !== undefined && asked.pixel !== null
          && asked.images !== null) hook.sliceTimes.push({ key: asked.key, images: asked.images, pixel: asked.pixel });
    });
  }

  function onFrame({ header, arrays }) {
    if (header.kind === "images") {
      store.applyImages(header, arrays);
      const key = sliceKey(header.state.volume);
      if (wantedSlice !== null && wantedSlice === key) wantedSlice = null;
      buildControls();
      showBlank();
      hook.slice = key;
      hook.blank = store.blank;
      ui.panels.dataset.slice = key;
      if (store.blank) { hook.ready = true; hook.slicesShown += 1; return; }
      relayout();
      if (options.afterImages) options.afterImages();
      painter.renderStatic();
      painter.drawAll();
      hook.ready = true;
      hook.slicesShown += 1;
      timeSlice("images");
    } else if (header.kind === "maps") {
      if (!store.current(header)) return;
      store.applyMaps(header, arrays);
      if (store.state && store.state.in_view.includes(header.model)) {
        painter.renderStatic();
        painter.drawAll();
      }
      status.renderProgress();
    } else if (header.kind === "progress") {
      if (!store.current(header)) return;
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
    if (!store.state || store.blank) return;
    if (header.seq < paintedSeq || !store.current(header)) { hook.stale += 1; return; }
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
    timeSlice("pixel");
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

  // -- slices of a volume ----------------------------------------------------------------
  let blankShown = null;
  function showBlank() {
    ui.panels.hidden = Boolean(store.blank);
    if (store.blank) ui.message.textContent = store.blank;
    else if (blankShown !== null && ui.message.textContent === blankShown) ui.message.textContent = "";
    blankShown = store.blank;
  }

  function sliceControls() {
    const volume = store.state && store.state.volume;
    if (!ui.slice) return;
    ui.slice.controls.hidden = !volume;
    if (!volume || wantedSlice !== null) return;  // the slider is ahead of the server
    const depth = volume.depths[volume.axis];
    ui.slice.axis.value = String(volume.axis);
    ui.slice.input.max = String(depth - 1);
    ui.slice.input.value = String(volume.index);
    ui.slice.output.textContent = `${volume.index} / ${depth - 1}`;
  }

  function askSlice(message) {
    const volume = store.state && store.state.volume;
    if (!volume) return;
    const axis = message.axis === undefined ? volume.axis : message.axis;
    if (message.index !== undefined) {
      wantedSlice = `${axis},${message.index}`;
      sliceAsked = { key: wantedSlice, at: performance.now() };
      ui.slice.output.textContent = `${message.index} / ${volume.depths[axis] - 1}`;
    } else {
      wantedSlice = null;  // a new axis: its slice is the server's choice
    }
    sendPixelMessage({ type: "slice", ...message });
  }

  /** Step `by` slices from the one in view (or last asked for), within the volume. */
  function stepSlice(by) {
    const volume = store.state && store.state.volume;
    if (!volume) return false;
    const current = wantedSlice !== null ? Number(wantedSlice.split(",")[1]) : volume.index;
    const next = Math.min(Math.max(current + by, 0), volume.depths[volume.axis] - 1);
    if (next !== current) {
      ui.slice.input.value = String(next);
      askSlice({ index: next });
    }
    return true;
  }

  if (ui.slice) {
    ui.slice.input.addEventListener("input", () => askSlice({ index: Number(ui.slice.input.value) }));
    ui.slice.axis.addEventListener("change", () => askSlice({ axis: Number(ui.slice.axis.value) }));
  }

  // -- controls --------------------------------------------------------------------------
  function buildControls() {
    const state = store.state;
    sliceControls();
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
    const step = SLICE_STEPS[e.key] || (e.altKey ? ALT_SLICE_STEPS[e.key] : undefined);
    if (step !== undefined && store.state.volume) {
      if (e.target && e.target.tagName === "SELECT") return;  // the select's own keys
      e.preventDefault();
      if (options.isolated) e.stopPropagation();
      stepSlice(step);
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
