// Picture making for the command line: a colormap, heat-map overlays, and a labelled contact
// sheet drawn with a built-in bitmap font. Pixels only; the maps themselves come from the core.

/** An 8-bit RGB picture, row-major, width × height × 3 bytes. */
export interface RGBImage {
  width: number;
  height: number;
  pixels: Uint8Array;
}

// Matt Zucker's degree-6 fit of matplotlib's viridis (CC0): per channel, c0 + c1·t + … + c6·t⁶.
const VIRIDIS_FIT = [
  [0.2777273272234177, 0.1050930431085774, -0.3308618287255563, -4.634230498983486, 6.228269936347081, 4.776384997670288, -5.435455855934631],
  [0.005407344544966578, 1.404613529898575, 0.214847559468213, -5.799100973351585, 14.17993336680509, -13.74514537774601, 4.645852612178535],
  [0.3340998053353061, 1.384590162594685, 0.09509516302823659, -19.33244095627987, 56.69055260068105, -65.35303263337234, 26.3124352495832],
];

/** Viridis as a 256-entry RGB table (entry i for intensity i / 255). */
export const VIRIDIS: Uint8Array = (() => {
  const table = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++)
    VIRIDIS_FIT.forEach((c, channel) => {
      const t = i / 255;
      const value = c.reduceRight((sum, coefficient) => sum * t + coefficient, 0);
      table[i * 3 + channel] = Math.round(Math.min(1, Math.max(0, value)) * 255);
    });
  return table;
})();

// How much of the colour covers the picture where the map is at its maximum.
const OVERLAY_OPACITY = 0.8;

/**
 * The image with `intensity` (values in [0, 1], the image's size) painted over it in viridis,
 * each pixel's opacity proportional to its intensity: where the map is 0 the image shows unchanged.
 */
export function overlay(image: RGBImage, intensity: Float32Array): RGBImage {
  const pixels = new Uint8Array(image.pixels.length);
  for (let i = 0; i < intensity.length; i++) {
    const v = Math.min(1, Math.max(0, intensity[i]));
    const entry = Math.round(v * 255) * 3;
    const alpha = OVERLAY_OPACITY * v;
    for (let c = 0; c < 3; c++) pixels[i * 3 + c] = Math.round(image.pixels[i * 3 + c] * (1 - alpha) + VIRIDIS[entry + c] * alpha);
  }
  return { width: image.width, height: image.height, pixels };
}

// How much a label's colour covers the picture in a label overlay.
const LABEL_OPACITY = 0.5;

/** The image with each pixel's label colour (`palette`, 256 RGB entries) blended over it; labels equal to `skip` leave the image as it is. */
export function labelOverlay(image: RGBImage, labels: Uint8Array, palette: Uint8Array, skip?: number): RGBImage {
  const pixels = new Uint8Array(image.pixels.length);
  for (let i = 0; i < labels.length; i++) {
    const entry = labels[i] * 3;
    const alpha = labels[i] === skip ? 0 : LABEL_OPACITY;
    for (let c = 0; c < 3; c++) pixels[i * 3 + c] = Math.round(image.pixels[i * 3 + c] * (1 - alpha) + palette[entry + c] * alpha);
  }
  return { width: image.width, height: image.height, pixels };
}

/** Nearest-neighbour enlargement by an integer factor. */
export function upscale(image: RGBImage, factor: number): RGBImage {
  const width = image.width * factor;
  const height = image.height * factor;
  const pixels = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const from = (Math.floor(y / factor) * image.width + Math.floor(x / factor)) * 3;
      pixels.set(image.pixels.subarray(from, from + 3), (y * width + x) * 3);
    }
  return { width, height, pixels };
}

// The classic 5×7 LCD font for ASCII 32–126: five column bytes per glyph, bit 0 the top row.
const FONT = Buffer.from(
  (
    "0000000000 00005f0000 0007000700 147f147f14 242a7f2a12 2313086462 3649552250 0005030000 001c224100 0041221c00" +
    " 082a1c2a08 08083e0808 0050300000 0808080808 0060600000 2010080402 3e5149453e 00427f4000 4261514946 2141454b31" +
    " 1814127f10 2745454539 3c4a494930 0171090503 3649494936 064949291e 0036360000 0056360000 0008142241 1414141414" +
    " 4122140800 0201510906 324979413e 7e1111117e 7f49494936 3e41414122 7f4141221c 7f49494941 7f09090101 3e41415132" +
    " 7f0808087f 00417f4100 2040413f01 7f08142241 7f40404040 7f0204027f 7f0408107f 3e4141413e 7f09090906 3e4151215e" +
    " 7f09192946 4649494931 01017f0101 3f4040403f 1f2040201f 7f2018207f 6314081463 0304780403 6151494543 00007f4141" +
    " 0204081020 41417f0000 0402010204 4040404040 0001020400 2054545478 7f48444438 3844444420 384444487f 3854545418" +
    " 087e090102 081454543c 7f08040478 00447d4000 2040443d00 007f102844 00417f4000 7c04180478 7c08040478 3844444438" +
    " 7c14141408 081414187c 7c08040408 4854545420 043f444020 3c4040207c 1c2040201c 3c4030403c 4428102844 0c5050503c" +
    " 4464544c44 0008364100 00007f0000 0041360800 0804081008"
  ).replaceAll(" ", ""),
  "hex",
);
const GLYPH_WIDTH = 5;
const GLYPH_HEIGHT = 7;
const FIRST_CHAR = 32;

/** Pixel width of `text` drawn at `scale` (a one-column gap after each glyph). */
export function textWidth(text: string, scale: number): number {
  return [...text].length * (GLYPH_WIDTH + 1) * scale;
}

/** Draws `text` with its top-left corner at (x, y); characters outside printable ASCII draw as '?'. */
export function drawText(canvas: RGBImage, x: number, y: number, text: string, scale: number, colour: readonly [number, number, number]): void {
  [...text].forEach((char, index) => {
    const code = char.codePointAt(0) ?? 0;
    const glyph = (code >= FIRST_CHAR && code <= 126 ? code : "?".charCodeAt(0)) - FIRST_CHAR;
    const left = x + index * (GLYPH_WIDTH + 1) * scale;
    for (let column = 0; column < GLYPH_WIDTH; column++)
      for (let row = 0; row < GLYPH_HEIGHT; row++)
        if ((FONT[glyph * GLYPH_WIDTH + column] >> row) & 1) fillRect(canvas, left + column * scale, y + row * scale, scale, scale, colour);
  });
}

function fillRect(canvas: RGBImage, x: number, y: number, width: number, height: number, colour: readonly [number, number, number]): void {
  for (let j = Math.max(0, y); j < Math.min(canvas.height, y + height); j++)
    for (let i = Math.max(0, x); i < Math.min(canvas.width, x + width); i++) canvas.pixels.set(colour, (j * canvas.width + i) * 3);
}

function blit(canvas: RGBImage, image: RGBImage, x: number, y: number): void {
  for (let row = 0; row < image.height; row++)
    canvas.pixels.set(image.pixels.subarray(row * image.width * 3, (row + 1) * image.width * 3), ((y + row) * canvas.width + x) * 3);
}

/** The sheet's geometry for rows of `count` tiles of a width × height image, so callers can tell where each tile lies. */
export function sheetLayout(width: number, height: number, count: number, rows = 1) {
  // Small images are enlarged (nearest) to about 256 px so the maps and labels are readable.
  const scale = Math.max(1, Math.floor(256 / Math.max(width, height)));
  const fontScale = 2;
  const margin = 8;
  const labelHeight = GLYPH_HEIGHT * fontScale + margin;
  const tileWidth = width * scale;
  const tileHeight = height * scale;
  const rowHeight = labelHeight + tileHeight + margin;
  return {
    scale,
    fontScale,
    margin,
    labelHeight,
    tileWidth,
    tileHeight,
    width: margin + count * (tileWidth + margin),
    height: margin + rows * rowHeight,
    /** Top-left corner of the picture of tile `index` in row `row`. */
    tile: (index: number, row = 0) => ({ x: margin + index * (tileWidth + margin), y: margin + row * rowHeight + labelHeight }),
  };
}

const BACKGROUND = [24, 24, 24] as const;
const INK = [240, 240, 240] as const;

/** A labelled picture on a sheet. */
export interface Tile {
  label: string;
  image: RGBImage;
}

/** Pictures of one size side by side on a dark sheet, each enlarged and labelled above (labels cut to fit). */
export function contactSheet(tiles: readonly Tile[]): RGBImage {
  return contactSheetRows([tiles]);
}

/** Rows of tiles (all pictures of one size) on one sheet, as wide as the longest row. */
export function contactSheetRows(rows: readonly (readonly Tile[])[]): RGBImage {
  const { width, height } = rows[0][0].image;
  const layout = sheetLayout(width, height, Math.max(...rows.map((r) => r.length)), rows.length);
  const canvas: RGBImage = { width: layout.width, height: layout.height, pixels: new Uint8Array(layout.width * layout.height * 3) };
  fillRect(canvas, 0, 0, canvas.width, canvas.height, BACKGROUND);
  const fits = Math.floor(layout.tileWidth / ((GLYPH_WIDTH + 1) * layout.fontScale));
  rows.forEach((tiles, row) =>
    tiles.forEach(({ label, image }, index) => {
      const { x, y } = layout.tile(index, row);
      const chars = [...label];
      const text = chars.length > fits ? `${chars.slice(0, Math.max(0, fits - 2)).join("")}..` : label;
      drawText(canvas, x, y - layout.labelHeight, text, layout.fontScale, INK);
      blit(canvas, upscale(image, layout.scale), x, y);
    }),
  );
  return canvas;
}
