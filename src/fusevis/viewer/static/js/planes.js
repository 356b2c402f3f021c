// A 3-D network's hover: the hovered voxel's Jacobian row on the three orthogonal planes
// through it (axial, coronal, sagittal), per model and input, with the voxel marked. The
// pixel frame carries them as `{model}/plane_{k}_{j}` and `header.models[model].planes`
// (see viewer/volume3d.py); models without planes (2-D networks) add nothing here.

import { formatNumber, signedColour } from "./views.js";

const SIDE = 180;  // CSS pixels of a plane's longer edge
const MARK = "#30ff60";

/** One plane as a canvas: values coloured by sign against `range`, the voxel boxed. */
function planeCanvas(array, mark, range, gamma, label) {
  const [h, w] = array.shape;
  const image = new ImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    const [r, g, b] = signedColour(array.data[i] / range, gamma);
    image.data.set([r, g, b, 255], 4 * i);
  }
  const native = document.createElement("canvas");
  native.width = w;
  native.height = h;
  native.getContext("2d").putImageData(image, 0, 0);
  const scale = Math.max(1, Math.floor(SIDE / Math.max(h, w)));
  const canvas = document.createElement("canvas");
  canvas.width = w * scale;
  canvas.height = h * scale;
  canvas.setAttribute("aria-label", label);
  const context = canvas.getContext("2d");
  context.imageSmoothingEnabled = false;
  context.drawImage(native, 0, 0, w * scale, h * scale);
  context.strokeStyle = MARK;
  context.lineWidth = Math.max(1, scale / 4);
  const [row, col] = mark;
  context.strokeRect(col * scale - 1, row * scale - 1, scale + 2, scale + 2);
  return canvas;
}

/**
 * Paint the planes of the latest pixel frame ({ header, arrays }) into `container`
 * (hidden when no model in the frame has planes).
 */
export function paintPlanes(container, frame, gamma) {
  const figures = [];
  const models = frame ? frame.header.models : {};
  for (const [model, info] of Object.entries(models)) {
    if (!info.planes) continue;
    const range = info.jacobian_range > 0 ? info.jacobian_range : 1;
    const title = document.createElement("h2");
    title.textContent = `${model}: voxel (${info.voxel.join(", ")}), Jacobian row per input`;
    figures.push(title);
    info.jacobian_at_pixel.forEach((_, k) => {
      const row = document.createElement("div");
      row.className = "plane-row";
      info.planes.names.forEach((plane, j) => {
        const array = frame.arrays[`${model}/plane_${k}_${j}`];
        if (!array) return;
        const mark = info.planes.marks[j];
        const value = array.data[mark[0] * array.shape[1] + mark[1]];
        const figure = document.createElement("figure");
        figure.dataset.model = model;
        figure.dataset.input = String(k);
        figure.dataset.plane = plane;
        figure.dataset.value = String(value);
        figure.append(planeCanvas(array, mark, range, gamma, `${model} input ${k + 1} ${plane}`));
        const caption = document.createElement("figcaption");
        caption.textContent = `input ${k + 1}, ${plane}: J = ${formatNumber(value)}`;
        figure.append(caption);
        row.append(figure);
      });
      figures.push(row);
    });
  }
  container.replaceChildren(...figures);
  container.hidden = figures.length === 0;
}
