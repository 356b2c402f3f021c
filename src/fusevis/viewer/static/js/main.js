// Wiring: the connection, the controls and the pointer, handed to the modules that do the
// work (layout.js builds panels, paint.js colours them, selection.js turns the pointer into
// pixels and masks, status.js writes the status lines, export.js saves the view).

import { Connection, Store, maxAbs, takeToken } from "./data.js";
import { exportPng, npzHref } from "./export.js";
import { buildLayout } from "./layout.js";
import { Painter } from "./paint.js";
import { attachPointer, brushMask, regionMask } from "./selection.js";
import { Status } from "./status.js";

const $ = (id) => document.getElementById(id);
const store = new Store();
let layout = null;
let seq = 0;
let paintedSeq = -1;
const sentAt = new Map();
const painter = new Painter(store, () => layout || { panels: [], scatter: null });
const status = new Status(store, { readout: $("readout"), activity: $("activity"), progress: $("progress") }, {
  onCompute: (model, kind, estimate) => send({ type: "compute_maps", model, kind, estimate }),
});
const connection = new Connection(onFrame, () => {
  $("readout").textContent = "disconnected (a restarted viewer needs the new URL it printed)";
}, takeToken());

// what the browser tests and the benchmark read
const hook = {
  store, latencies: [], computeMs: [], renderMs: [], stale: 0, paintedSeq: -1, ready: false, painted: 0,
  computing: null, paintedPixels: [], maxAbs,
  get sent() { return connection.sent; },
};
window.fusevis = hook;

function onFrame({ header, arrays }) {
  if (header.kind === "images") {
    store.applyImages(header, arrays);
    buildControls();
    relayout();
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
    $("message").textContent = header.message;
  }
}

function onPixel(header, arrays) {
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
  $("export-npz").href = npzHref(store.state.in_view[0], store.state.pixel);
  $("unpin").disabled = !store.state.pinned;
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

// -- messages ----------------------------------------------------------------------------
function send(message) {
  connection.send(message);
}

function sendPixelMessage(message) {
  seq += 1;
  sentAt.set(seq, performance.now());
  send({ ...message, seq });
}

// -- controls ----------------------------------------------------------------------------
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

$("model").addEventListener("change", (e) => send({ type: "model", name: e.target.value }));
for (const radio of document.querySelectorAll("input[name=map-kind]")) {
  radio.addEventListener("change", () => send({ type: "maps", kind: radio.value }));
}
for (const kind of ["guidance", "jacobian"]) {
  $(`gamma-${kind}`).addEventListener("input", (e) => {
    store.gamma[kind] = Number(e.target.value);
    $(`gamma-${kind}-value`).textContent = store.gamma[kind].toFixed(2);
    if (kind === "guidance") painter.renderStatic(); else painter.renderJacobians();
    painter.drawAll();
  });
}
function unpin() {
  store.state.pinned = false;
  send({ type: "unpin" });
  $("unpin").disabled = true;
  status.renderReadout();
}
$("unpin").addEventListener("click", unpin);
$("export-png").addEventListener("click", () => {
  hook.lastExport = exportPng($("panels"), store.state.pixel);
});
document.addEventListener("keydown", (e) => {
  if (!store.state) return;
  const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
  if (e.key === "Escape") { unpin(); return; }
  if (store.state.pinned && moves[e.key]) {
    e.preventDefault();
    const [drow, dcol] = moves[e.key];
    sendPixelMessage({ type: "move", drow, dcol });
  }
});

// -- layout and selection ----------------------------------------------------------------
function relayout() {
  const previous = layout;
  layout = buildLayout(store, $("panels"), previous, brushScatter);
  if (layout === previous) return;
  for (const { panel } of layout.panels) {
    attachPointer(panel, {
      isPinned: () => store.state.pinned,
      onHover: ([row, col]) => sendPixelMessage({ type: "hover", row, col }),
      onPin: ([row, col]) => {
        store.state.pinned = true;
        sendPixelMessage({ type: "pin", row, col });
      },
      onRegion: (from, to) => select(regionMask(from, to, store.shape)),
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
