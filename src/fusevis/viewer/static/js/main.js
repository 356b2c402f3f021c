// The page's wiring: its elements (by id) and the websocket, handed to view.js, which holds
// the viewer's behaviour (shared with the notebook widget). layout.js builds panels,
// paint.js colours them, selection.js turns the pointer into pixels and masks, status.js
// writes the status lines, export.js saves the view.

import { Connection, takeToken } from "./data.js";
import { npzHref } from "./export.js";
import { createView } from "./view.js";
import { paintPlanes } from "./planes.js";

const $ = (id) => document.getElementById(id);
const ui = {
  model: $("model"),
  compareBoxes: $("compare-boxes"),
  kinds: [...document.querySelectorAll("input[name=map-kind]")],
  gamma: Object.fromEntries(["guidance", "jacobian"].map((kind) => [
    kind, { input: $(`gamma-${kind}`), output: $(`gamma-${kind}-value`) },
  ])),
  slice: { controls: $("slice-controls"), axis: $("axis"), input: $("slice"), output: $("slice-value") },
  unpin: $("unpin"),
  png: $("export-png"),
  readout: $("readout"),
  activity: $("activity"),
  progress: $("progress"),
  message: $("message"),
  panels: $("panels"),
};

let connection = null;
const view = createView(ui, {
  send: (message) => connection.send(message),
  afterPixel: () => {
    const state = view.store.state;
    $("export-npz").href = npzHref(state.in_view[0], state.pixel, state.volume);
    paintPlanes($("planes"), view.store.pixelFrame, view.store.gamma.jacobian);
  },
});
connection = new Connection(view.onFrame, () => {
  $("readout").textContent = "disconnected (a restarted viewer needs the new URL it printed)";
}, takeToken());

// what the browser tests and the benchmark read
Object.defineProperty(view.hook, "sent", { get: () => connection.sent });
window.fusevis = view.hook;
