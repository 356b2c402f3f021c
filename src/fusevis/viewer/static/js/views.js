// Views: colour maps, image panels with zoom and colour bars, the scatter plot.

/** Signed values in [-1, 1] -> blue (negative), black (0), red-yellow (positive). */
export function signedColour(v, gamma) {
  const t = Math.pow(Math.min(Math.abs(v), 1), gamma);
  return v >= 0 ? [255 * t, 200 * t * t, 40 * t * t * t] : [40 * t * t * t, 140 * t * t, 255 * t];
}

/** Values in [0, 1] -> a dark-to-green ramp (influence shares). */
export function shareColour(v, gamma) {
  const t = Math.pow(Math.min(Math.max(v, 0), 1), gamma);
  return [255 * t * t, 40 + 215 * t, 60 + 120 * t * (1 - t)];
}

const MARKER = "#ff2020";
let overlayCache = { selection: null, canvas: null };

/** A translucent magenta canvas over the selected pixels (built once per selection). */
function selectionOverlay(selection, w, h) {
  if (overlayCache.selection !== selection) {
    const canvas = document.createElement("canvas");
    canvas.width = w;
    canvas.height = h;
    const image = new ImageData(w, h);
    for (let i = 0; i < selection.length; i++) if (selection[i]) image.data.set([255, 0, 255, 90], 4 * i);
    canvas.getContext("2d").putImageData(image, 0, 0);
    overlayCache = { selection, canvas };
  }
  return overlayCache.canvas;
}

/** The frame every panel shares: a titled box and its main canvas (not yet attached). */
function panelShell(title, canvasClass) {
  const root = document.createElement("div");
  root.className = "panel";
  const heading = document.createElement("h2");
  heading.textContent = title;
  const canvas = document.createElement("canvas");
  canvas.className = canvasClass;
  return { root, heading, canvas };
}

/** An image panel: title, native-resolution canvas, zoom of the field window, colour bar. */
export class Panel {
  constructor(parent, title, { zoom = true, colorbar = null } = {}) {
    let heading;
    ({ root: this.root, heading, canvas: this.canvas } = panelShell(title, "image"));
    this.title = title;
    this.canvas.setAttribute("aria-label", title);
    const body = document.createElement("div");
    body.className = "body";
    body.append(this.canvas);
    const side = document.createElement("div");
    if (zoom) {
      this.zoom = document.createElement("canvas");
      this.zoom.className = "zoom";
      this.zoom.title = "receptive-field window, enlarged";
      side.append(this.zoom);
    }
    if (colorbar) {
      this.colorbar = new ColorBar(side, colorbar);
    }
    body.append(side);
    this.root.append(heading, body);
    parent.append(this.root);
    this.image = null;
  }

  /** Fill the panel from a per-pixel colour function (index -> [r, g, b]). */
  paint(shape, colourAt) {
    const [h, w] = shape;
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
    }
    const image = new ImageData(w, h);
    const px = image.data;
    for (let i = 0, n = h * w; i < n; i++) {
      const [r, g, b] = colourAt(i);
      px[4 * i] = r; px[4 * i + 1] = g; px[4 * i + 2] = b; px[4 * i + 3] = 255;
    }
    this.image = image;
  }

  /**
   * Paint only a window (values elsewhere are zero, drawn black): the previous window is
   * cleared and the new one filled, so the cost follows the field, not the image.
   */
  paintWindow(shape, [top, bottom, left, right], colourAt) {
    const [h, w] = shape;
    if (!this.image || this.image.width !== w || this.image.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
      this.image = new ImageData(w, h);
      for (let i = 3; i < this.image.data.length; i += 4) this.image.data[i] = 255;
      this.window = null;
    }
    const px = this.image.data;
    if (this.window) {
      const [t, b, l, r] = this.window;
      for (let row = t; row < b; row++) px.fill(0, 4 * (row * w + l), 4 * (row * w + r));
      for (let row = t; row < b; row++) for (let col = l; col < r; col++) px[4 * (row * w + col) + 3] = 255;
    }
    for (let row = top; row < bottom; row++) {
      for (let col = left; col < right; col++) {
        const [red, green, blue] = colourAt(row - top, col - left);
        const i = 4 * (row * w + col);
        px[i] = red; px[i + 1] = green; px[i + 2] = blue;
      }
    }
    this.window = [top, bottom, left, right];
  }

  /** Draw the painted image, the selection tint, the red pixel marker and the zoom. */
  draw(pixel, window, selection) {
    if (!this.image) return;
    const context = this.canvas.getContext("2d");
    context.putImageData(this.image, 0, 0);
    if (selection) context.drawImage(selectionOverlay(selection, this.image.width, this.image.height), 0, 0);
    context.strokeStyle = MARKER;
    context.lineWidth = 1;
    context.strokeRect(pixel[1] - 2.5, pixel[0] - 2.5, 6, 6);
    if (this.zoom && window) this.drawZoom(pixel, window);
  }

  drawZoom(pixel, [top, bottom, left, right]) {
    const h = bottom - top, w = right - left;
    if (this.zoom.width !== w || this.zoom.height !== h) {
      this.zoom.width = w;
      this.zoom.height = h;
    }
    const context = this.zoom.getContext("2d");
    context.putImageData(this.image, -left, -top, left, top, w, h);
    context.fillStyle = MARKER;
    context.globalAlpha = 0.8;
    context.strokeStyle = MARKER;
    context.strokeRect(pixel[1] - left - 0.5, pixel[0] - top - 0.5, 2, 2);
    context.globalAlpha = 1;
  }

  /** The image pixel under a mouse event, or null outside the canvas. */
  pixelAt(event) {
    const rect = this.canvas.getBoundingClientRect();
    const col = Math.floor(((event.clientX - rect.left) / rect.width) * this.canvas.width);
    const row = Math.floor(((event.clientY - rect.top) / rect.height) * this.canvas.height);
    if (row < 0 || col < 0 || row >= this.canvas.height || col >= this.canvas.width) return null;
    return [row, col];
  }
}

/** A colour bar stating its numbers: low, middle and high. */
export class ColorBar {
  constructor(parent, kind) {
    this.kind = kind;
    this.root = document.createElement("div");
    this.root.className = "colorbar";
    this.canvas = document.createElement("canvas");
    this.canvas.width = 96;
    this.canvas.height = 1;
    this.labels = document.createElement("div");
    this.labels.className = "labels";
    this.root.append(this.canvas, this.labels);
    parent.append(this.root);
  }

  update(range, gamma) {
    const context = this.canvas.getContext("2d");
    const image = context.createImageData(96, 1);
    for (let i = 0; i < 96; i++) {
      const t = i / 95;
      const [r, g, b] = this.kind === "share" ? shareColour(t, gamma) : signedColour(2 * t - 1, gamma);
      image.data.set([r, g, b, 255], 4 * i);
    }
    context.putImageData(image, 0, 0);
    const low = this.kind === "share" ? 0 : -range;
    const middle = this.kind === "share" ? range / 2 : 0;
    this.labels.replaceChildren(...[low, middle, range].map((v) => {
      const span = document.createElement("span");
      span.textContent = formatNumber(v);
      return span;
    }));
    this.root.dataset.range = String(range);
  }
}

export function formatNumber(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 1e4 || a < 1e-3 ? v.toExponential(2) : v.toPrecision(3);
}

/** Scatter plot of map 1 against map 2 as a density image; drag to brush a rectangle. */
export class Scatter {
  constructor(parent, title, onBrush) {
    ({ root: this.root, heading: this.heading, canvas: this.canvas } = panelShell(title, "scatter"));
    this.canvas.width = 256;
    this.canvas.height = 256;
    this.axes = document.createElement("div");
    this.axes.className = "axis";
    this.root.append(this.heading, this.canvas, this.axes);
    parent.append(this.root);
    this.onBrush = onBrush;
    this.points = null;
    let start = null;
    this.canvas.addEventListener("mousedown", (e) => { start = this.local(e); });
    this.canvas.addEventListener("mouseup", (e) => {
      if (!start) return;
      const end = this.local(e);
      this.onBrush(this.toValue(Math.min(start[0], end[0]), Math.max(start[1], end[1])),
        this.toValue(Math.max(start[0], end[0]), Math.min(start[1], end[1])));
      start = null;
    });
  }

  local(event) {
    const rect = this.canvas.getBoundingClientRect();
    return [((event.clientX - rect.left) / rect.width) * 256, ((event.clientY - rect.top) / rect.height) * 256];
  }

  toValue(x, y) {
    const [lo, hi] = this.limits;
    return [lo + (x / 256) * (hi - lo), lo + ((256 - y) / 256) * (hi - lo)];
  }

  toCanvas(a, b) {
    const [lo, hi] = this.limits;
    return [((a - lo) / (hi - lo)) * 255, 255 - ((b - lo) / (hi - lo)) * 255];
  }

  /** Plot (xs[i], ys[i]) on shared limits; highlight selected points and the pixel's. */
  draw(xs, ys, limits, selection, current, label) {
    this.limits = limits;
    this.points = [xs, ys];
    const counts = new Float32Array(256 * 256);
    for (let i = 0; i < xs.length; i++) {
      const [x, y] = this.toCanvas(xs[i], ys[i]);
      if (x >= 0 && x < 256 && y >= 0 && y < 256) counts[(y | 0) * 256 + (x | 0)] += 1;
    }
    const image = new ImageData(256, 256);
    for (let i = 0; i < counts.length; i++) {
      const t = counts[i] ? 0.25 + 0.75 * Math.min(Math.log1p(counts[i]) / 6, 1) : 0;
      image.data.set([200 * t, 210 * t, 230 * t, 255], 4 * i);
    }
    const context = this.canvas.getContext("2d");
    context.putImageData(image, 0, 0);
    if (selection) {
      context.fillStyle = "#ff40ff";
      for (let i = 0; i < selection.length; i++) {
        if (!selection[i]) continue;
        const [x, y] = this.toCanvas(xs[i], ys[i]);
        context.fillRect(x, y, 1.5, 1.5);
      }
    }
    if (current !== null) {
      const [x, y] = this.toCanvas(xs[current], ys[current]);
      context.strokeStyle = "#ff2020";
      context.strokeRect(x - 3, y - 3, 6, 6);
    }
    this.heading.textContent = label;
    this.axes.textContent = `x: map 1, y: map 2, both ${formatNumber(limits[0])} … ${formatNumber(limits[1])}`;
  }
}
