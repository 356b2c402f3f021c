// Status: what the page says in words: the pixel's values, what the server is computing
// now, and how far the maps are (with the prompt before a long computation).

import { formatNumber } from "./views.js";

const STRATEGIES = { recorded: "recorded sweep", cone: "cone", crop: "crop", full: "full image" };

/** A duration for people: "0.4 s", "12 s", "3 min", "2 h 10 min". */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "?";
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 90) return `${Math.round(seconds)} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 90) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function strategyName(method) {
  return STRATEGIES[method] || method || "?";
}

/** The status area: `#readout`, `#activity`, `#progress`. */
export class Status {
  constructor(store, elements, { onCompute }) {
    this.store = store;
    this.readout = elements.readout;
    this.activity = elements.activity;
    this.progress = elements.progress;
    this.onCompute = onCompute;
    this.computing = null;   // the latest "computing" frame not yet answered
    this.timer = null;
  }

  /** The pixel's fused value, guidance and Jacobian values per model, and how they were found. */
  renderReadout() {
    const state = this.store.state;
    const frame = this.store.pixelFrame;
    if (!frame) return;
    const [row, col] = state.pixel;
    const lines = [`pixel (row ${row}, col ${col})${state.pinned ? " pinned" : ""}`];
    for (const [name, info] of Object.entries(frame.header.models)) {
      const approx = info.guidance_estimate ? "≈" : "";  // an estimate, never shown as exact
      const g = info.guidance_at_pixel.map((v, k) => `G${k + 1}${approx} ${formatNumber(v)}`).join("  ");
      const j = info.jacobian_at_pixel.map((v, k) => `J${k + 1}(p) ${formatNumber(v)}`).join("  ");
      const took = info.compute_ms === undefined ? "" : `, ${formatDuration(info.compute_ms / 1e3)}`;
      lines.push(`${name}: fused ${formatNumber(info.fused)}  ${g}  ${j}  [${info.method}${took}]`);
    }
    this.readout.textContent = lines.join("\n");
  }

  /** The server started a pixel that is taking a while: say which, with what, since when. */
  showComputing(header) {
    this.computing = { header, since: performance.now() };
    this.renderActivity();
    if (this.timer === null) this.timer = setInterval(() => this.renderActivity(), 100);
  }

  /** A pixel answer arrived: the activity line clears once the announced pixel is answered. */
  answered(seq) {
    if (this.computing && seq >= this.computing.header.seq) {
      this.computing = null;
      clearInterval(this.timer);
      this.timer = null;
      this.renderActivity();
    }
  }

  renderActivity() {
    if (!this.computing) { this.activity.textContent = ""; return; }
    const { header, since } = this.computing;
    const waited = (performance.now() - since) / 1e3 + 0.15;
    const models = Object.entries(header.models).map(([name, info]) => {
      const expected = info.expected_ms > 0 ? `, ~${formatDuration(info.expected_ms / 1e3)} a pixel` : "";
      return `${name} [${strategyName(info.method)}${expected}]`;
    });
    const [row, col] = header.pixel;
    this.activity.textContent = `computing pixel (row ${row}, col ${col}): ${models.join(", ")} … ${formatDuration(waited)}`;
  }

  /** One line per map job of the models in view: a bar and times, or the prompt to start. */
  renderProgress() {
    const store = this.store;
    const lines = [];
    for (const name of store.state ? store.state.in_view : []) {
      for (const [kind, maps] of Object.entries(store.model(name).maps)) {
        const line = this.progressLine(name, kind, maps);
        if (line) lines.push(line);
      }
    }
    this.progress.replaceChildren(...lines);
  }

  progressLine(name, kind, maps) {
    const div = document.createElement("div");
    div.className = "bar";
    div.dataset.model = name;
    div.dataset.kind = kind;
    div.dataset.state = maps.state;
    const label = `${kind} maps ${name}`;
    if (maps.state === "finished") {
      if (!maps.estimate) return null;
      const bound = maps.error_bound === null || maps.error_bound === undefined ? "" : `, |error| ≤ ${formatNumber(maps.error_bound)}`;
      div.append(`${label}: estimate, not exact${bound}`);
      return div;
    }
    if (maps.state === "error") {
      div.append(`${label} failed: ${maps.error}`);
      return div;
    }
    if (maps.state === "ask") {
      const took = maps.done ? ` (${maps.done}/${maps.total} passes done)` : "";
      div.append(`${label} would take ~${formatDuration(maps.predicted_s)}${took}`);
      const exact = document.createElement("button");
      exact.type = "button";
      exact.className = "compute-exact";
      exact.textContent = `compute exact maps (~${formatDuration(maps.predicted_s)})`;
      exact.addEventListener("click", () => this.onCompute(name, kind, false));
      const estimate = document.createElement("button");
      estimate.type = "button";
      estimate.className = "compute-estimate";
      estimate.textContent = "estimate instead";
      estimate.disabled = !maps.estimates;
      estimate.title = maps.estimates
        ? "faster, with a stated error bound; shown as an estimate, never as exact"
        : "this FuseVis has no estimate of these maps yet";
      estimate.addEventListener("click", () => this.onCompute(name, kind, true));
      div.append(exact, estimate);
      return div;
    }
    const bar = document.createElement("progress");
    bar.max = maps.total || 1;
    bar.value = maps.done;
    let words = maps.state === "queued" ? "queued" : `${maps.done}/${maps.total || "?"} passes, ${formatDuration(maps.elapsed_s)}`;
    if (maps.state !== "queued" && maps.remaining_s !== null && maps.remaining_s !== undefined) {
      words += `, ~${formatDuration(maps.remaining_s)} left`;
    }
    if (maps.state === "paused") words += " (paused while you hover)";
    if (maps.estimate) words += " (estimate)";
    div.append(label, bar, words);
    return div;
  }
}
