// Selection: the pointer on an image panel (hover, pin, shift-drag region) and the masks
// of selected pixels (a region of an image, or points brushed on the scatter plot).

/** A mask of the pixels in the rectangle between two corners: `{mask, count}`. */
export function regionMask([r0, c0], [r1, c1], [h, w]) {
  const mask = new Uint8Array(h * w);
  let count = 0;
  for (let r = Math.min(r0, r1); r <= Math.max(r0, r1); r++) {
    for (let c = Math.min(c0, c1); c <= Math.max(c0, c1); c++) { mask[r * w + c] = 1; count += 1; }
  }
  return { mask, count };
}

/** A mask of the pixels whose (a, b) fall in the brushed box: `{mask (null: none), count}`. */
export function brushMask(a, b, [x0, y0], [x1, y1]) {
  const mask = new Uint8Array(a.length);
  let count = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] >= x0 && a[i] <= x1 && b[i] >= y0 && b[i] <= y1) { mask[i] = 1; count += 1; }
  }
  return { mask: count ? mask : null, count };
}

/**
 * Connect a panel's canvas to the pointer: `onHover(pixel)` for a new pixel under the mouse
 * (not while pinned or dragging), `onPin(pixel)` on a click, `onRegion(from, to)` after a
 * shift-drag. `isPinned()` says whether hovering is ignored.
 */
export function attachPointer(panel, { onHover, onPin, onRegion, isPinned }) {
  let regionStart = null;
  let last = null;
  panel.canvas.addEventListener("mousemove", (e) => {
    const pixel = panel.pixelAt(e);
    if (!pixel || isPinned() || regionStart) return;
    if (last && last[0] === pixel[0] && last[1] === pixel[1]) return;
    last = pixel;
    onHover(pixel);
  });
  panel.canvas.addEventListener("mouseleave", () => { last = null; });
  panel.canvas.addEventListener("mousedown", (e) => {
    if (e.shiftKey) regionStart = panel.pixelAt(e);
  });
  panel.canvas.addEventListener("mouseup", (e) => {
    const pixel = panel.pixelAt(e);
    if (regionStart && pixel) {
      onRegion(regionStart, pixel);
      regionStart = null;
      return;
    }
    regionStart = null;
    if (pixel && !e.shiftKey) onPin(pixel);
  });
}
