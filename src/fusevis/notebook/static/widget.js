// The notebook widget: the viewer's panels over widget messages instead of a websocket.
// The viewer's behaviour is the viewer's own view.js (which uses data.js, layout.js,
// paint.js, views.js, selection.js, status.js and export.js); only the wiring differs from
// the viewer's main.js: the elements are built inside the widget, the frames arrive as
// widget buffers (`msg:custom`), messages leave by `model.send`, a region drawn in the page
// goes to the kernel (w.region) and .npz export is the kernel's.

import { decodeFrame } from "./data.js";
import { regionMask } from "./selection.js";
import { createView } from "./view.js";

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
  // a volume's slice (hidden for 2-D images): w.slice and w.axis
  const axis = make("select", { className: "fv-axis", title: "slice axis" });
  for (const [value, text] of [["2", "axial"], ["1", "coronal"], ["0", "sagittal"]]) axis.append(new Option(text, value));
  ui.slice = {
    axis,
    input: make("input", { type: "range", min: "0", max: "0", step: "1", value: "0", className: "fv-slice" }),
    output: make("output", { className: "fv-slice-value", textContent: "0" }),
  };
  ui.slice.controls = make("fieldset", { className: "fv-slice-controls", hidden: true,
    title: "Move through the volume: PageUp / PageDown (or Alt+↑ / Alt+↓) step one slice (w.slice, w.axis)" },
  make("legend", { textContent: "slice" }), axis, ui.slice.input, ui.slice.output);
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
    make("label", {}, "network ", ui.model), compare, kinds, ui.slice.controls, ...sliders, ui.unpin, ui.png, ui.npz);
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
  const extra = { sent: 0, root: el, downloads: [], kernelMs: [] };
  function send(message) {
    extra.sent += 1;
    model.send(message);
  }
  const view = createView(ui, {
    send,
    keys: el,
    isolated: true,
    // w.region: (top, bottom, left, right), ends excluded; sent as a message (as hovers
    // are), which the kernel turns into w.region and sends back
    onRegion: ([r0, c0], [r1, c1]) => send({
      type: "region",
      region: [Math.min(r0, r1), Math.max(r0, r1) + 1, Math.min(c0, c1), Math.max(c0, c1) + 1],
    }),
    afterImages: () => showRegion(),
    afterPixel: (header) => extra.kernelMs.push(header.kernel_ms),  // message in to frame out
  });
  // what the browser tests and the benchmark read (as the viewer's window.fusevis)
  const hook = Object.assign(view.hook, extra);
  Object.defineProperty(hook, "sent", { get: () => extra.sent });
  el.fusevis = hook;
  window.fusevisWidgets = window.fusevisWidgets || [];
  window.fusevisWidgets.push(hook);

  function onCustom(content, buffers) {
    if (content && content.frame) view.onFrame(decodeFrame(arrayBuffer(buffers[0])));
    else if (content && content.download) download(content.download, buffers[0]);
  }

  function download(filename, buffer) {
    const blob = new Blob([arrayBuffer(buffer)], { type: "application/octet-stream" });
    const link = make("a", { download: filename, href: URL.createObjectURL(blob) });
    hook.downloads.push({ filename, bytes: blob.size });
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  }

  /** Tint the region Python holds (`w.region`), or clear it. */
  function showRegion() {
    const region = model.get("region");
    hook.region = region;
    if (!view.store.state) return;
    if (!region) { view.select({ mask: null, count: 0 }); return; }
    const [top, bottom, left, right] = region;
    view.select(regionMask([top, left], [bottom - 1, right - 1], view.store.shape));
  }

  ui.npz.addEventListener("click", () => send({ type: "export_npz" }));
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
