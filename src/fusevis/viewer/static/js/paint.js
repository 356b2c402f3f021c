// Painting: colours the panels of the layout from what the store holds.

import { shareColour, signedColour } from "./views.js";

function grey(values, lo = 0, hi = 1) {
  const scale = hi > lo ? 255 / (hi - lo) : 0;
  return (i) => { const v = (values[i] - lo) * scale; return [v, v, v]; };
}

/** Paints a layout (`getLayout()`: the current one) from a store. */
export class Painter {
  constructor(store, getLayout) {
    this.store = store;
    this.getLayout = getLayout;
  }

  /** Inputs, fused images, maps and the RGB panel, then the scatter plot. */
  renderStatic() {
    const store = this.store;
    if (!store.state) return;
    const shape = store.shape;
    const range = store.sharedMapRange();
    const gamma = store.gamma.guidance;
    const influence = store.state.map_kind === "influence";
    for (const { panel, kind, model, k } of this.getLayout().panels) {
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
    this.renderScatter();
  }

  /** The Jacobian panels of the latest pixel frame (only its window is repainted). */
  renderJacobians() {
    const store = this.store;
    const frame = store.pixelFrame;
    if (!frame) return;
    const range = store.sharedJacobianRange();
    const gamma = store.gamma.jacobian;
    for (const { panel, kind, model, k } of this.getLayout().panels) {
      if (kind !== "jacobian") continue;
      const info = frame.header.models[model];
      const values = frame.arrays[`${model}/jacobian_${k}`];
      if (!info || !values) continue;
      const ww = info.window[3] - info.window[2];
      panel.paintWindow(store.shape, info.window, (r, c) => signedColour(values.data[r * ww + c] / range, gamma));
      panel.colorbar.update(range, gamma);
    }
  }

  /** Every panel with its pixel marker, selection tint and zoom. */
  drawAll() {
    const store = this.store;
    if (!store.state) return;
    const frame = store.pixelFrame;
    for (const { panel, model } of this.getLayout().panels) {
      const info = frame && frame.header.models[model];
      panel.draw(store.state.pixel, info ? info.window : null, store.selection);
    }
  }

  /** The map-1 against map-2 scatter plot of the active model. */
  renderScatter() {
    const store = this.store;
    const scatter = this.getLayout().scatter;
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
}
