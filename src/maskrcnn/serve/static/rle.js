// COCO run-length encoded masks, decoded in the browser.
//
// A mask {size: [h, w], counts: "..."} is a list of run lengths over the pixels in
// column-major order (down the first column, then the next), starting with a run of 0s.
// The string packs each run as pycocotools' rleToString does: 5 bits per character
// (offset 48), a continuation bit (0x20), a sign bit on the last character, and from the
// third run on, each value is stored as the difference to the run two places before.
"use strict";

function decodeRleCounts(text) {
  const counts = [];
  let p = 0;
  while (p < text.length) {
    let value = 0;
    let shift = 0;
    let more = true;
    while (more) {
      const c = text.charCodeAt(p) - 48;
      value |= (c & 0x1f) << shift;
      more = (c & 0x20) !== 0;
      p += 1;
      shift += 5;
      if (!more && (c & 0x10)) value |= -1 << shift; // negative: extend the sign
    }
    if (counts.length > 2) value += counts[counts.length - 2];
    counts.push(value);
  }
  return counts;
}

// The mask's pixels inside their bounding rectangle:
// {x0, y0, width, height, data: Uint8Array(width * height) row-major, 1 = inside}, or null if empty.
function rleToCrop(rle) {
  const [h, w] = rle.size;
  const counts = typeof rle.counts === "string" ? decodeRleCounts(rle.counts) : rle.counts;
  const runs = []; // [start, end) pixel indices (column-major) of the runs of 1s
  let pos = 0;
  for (let i = 0; i < counts.length; i++) {
    if (i % 2 === 1 && counts[i] > 0) runs.push([pos, pos + counts[i]]);
    pos += counts[i];
  }
  if (runs.length === 0 || h === 0) return null;
  let x0 = w, x1 = -1, y0 = h, y1 = -1;
  for (const [start, end] of runs) {
    const firstCol = Math.floor(start / h), lastCol = Math.floor((end - 1) / h);
    x0 = Math.min(x0, firstCol);
    x1 = Math.max(x1, lastCol);
    if (firstCol !== lastCol) { y0 = 0; y1 = h - 1; }
    else { y0 = Math.min(y0, start % h); y1 = Math.max(y1, (end - 1) % h); }
  }
  const width = x1 - x0 + 1, height = y1 - y0 + 1;
  const data = new Uint8Array(width * height);
  for (const [start, end] of runs) {
    for (let i = start; i < end; i++) {
      const x = Math.floor(i / h), y = i - x * h;
      data[(y - y0) * width + (x - x0)] = 1;
    }
  }
  return { x0, y0, width, height, data };
}
