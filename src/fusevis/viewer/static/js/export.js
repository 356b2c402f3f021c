// Export: the view as one PNG (every panel as painted), and the link to its data (.npz).

/** Draw every image and scatter canvas of the page, row by row, into one PNG download. */
export function exportPng(root, pixel) {
  const gap = 8;
  const rows = [...root.querySelectorAll(".row")].map((row) => [...row.querySelectorAll("canvas.image, canvas.scatter")]);
  const width = Math.max(...rows.map((r) => r.reduce((s, c) => s + c.width + gap, gap)));
  const height = rows.reduce((s, r) => s + Math.max(...r.map((c) => c.height)) + gap, gap);
  const out = document.createElement("canvas");
  out.width = width;
  out.height = height;
  const context = out.getContext("2d");
  context.fillStyle = "#16181d";
  context.fillRect(0, 0, width, height);
  let y = gap;
  for (const row of rows) {
    let x = gap;
    for (const canvas of row) { context.drawImage(canvas, x, y); x += canvas.width + gap; }
    y += Math.max(...row.map((c) => c.height)) + gap;
  }
  const link = document.createElement("a");
  link.download = `fusevis-${pixel[0]}-${pixel[1]}.png`;
  link.href = out.toDataURL("image/png");
  link.click();
  return link.href.length;
}

/** The address of the view's data: inputs, fused image, maps, the pixel's Jacobian rows. */
export function npzHref(model, [row, col], volume = null) {
  const where = volume ? `&axis=${volume.axis}&slice=${volume.index}` : "";
  return `/api/export.npz?model=${encodeURIComponent(model)}&row=${row}&col=${col}${where}`;
}
