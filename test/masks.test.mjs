// Maps → label maps (ts/masks.ts over native/core/postprocess/label_maps): each convention checked
// against a reference computed here (PyTorch's bilinear and bicubic upsampling written out in JS),
// ties, thresholds, the uncertain band, backgrounds, components; the presets; palette PNGs.
import t from "tap";
import path from "node:path";
import { createRequire } from "node:module";

import { root } from "./helpers/golden.mjs";
import { readPalettePNG } from "./helpers/palette-png.mjs";
import { normalise, upsample } from "./helpers/upsample.mjs";

const require = createRequire(import.meta.url);
const ovam = require(path.join(root, "dist", "index.js"));
const { labelMaps, resolveMaskSettings, MASK_PRESETS, encodeIndexed, decodeIndexedPNG, InvalidOptionError } = ovam;

const settings = (knobs = {}) => resolveMaskSettings(knobs);

// The reference: per class normalised, upsampled, clamped; argmax over passing classes (lower id on ties).
function reference(maps, h, w, H, W, classes, s, background) {
  const scores = classes.map((_, c) => upsample(normalise(maps.slice(c * h * w, (c + 1) * h * w), s.normalize), h, w, H, W, s.interpolation).map((v) => Math.min(1, Math.max(0, v))));
  const labels = new Uint8Array(H * W);
  const nearThreshold = new Set();
  for (let p = 0; p < H * W; p++) {
    let best = -1;
    let top = 0;
    classes.forEach((c, i) => {
      const v = scores[i][p];
      top = Math.max(top, v);
      if (Math.abs(v - c.threshold) < 1e-5) nearThreshold.add(p);
      const passes = s.compare === "ge" ? v >= c.threshold : v > c.threshold;
      if (passes && (best < 0 || v > scores[best][p] || (v === scores[best][p] && c.id < classes[best].id))) best = i;
    });
    labels[p] = best < 0 ? background : classes[best].id;
    if (s.uncertain && top >= s.uncertain[0] && top < s.uncertain[1]) labels[p] = 255;
  }
  return { labels, nearThreshold };
}

// A deterministic pseudo-random plane (values in [0, 1)).
function noise(n, seed) {
  let x = seed;
  return Float32Array.from({ length: n }, () => ((x = (x * 1103515245 + 12345) % 2147483648) / 2147483648));
}

for (const interpolation of ["bilinear", "bicubic"])
  for (const normalize of ["max", "minmax"])
    t.test(`${interpolation} upsampling, ${normalize} normalisation: labels equal the reference`, async (t) => {
      const [h, w, H, W] = [5, 7, 40, 56];
      const classes = [
        { id: 15, threshold: 0.4 },
        { id: 7, threshold: 0.55 },
        { id: 9, threshold: 0.3 },
      ];
      const maps = new Float32Array(3 * h * w);
      classes.forEach((_, c) => maps.set(noise(h * w, 11 + c), c * h * w));
      const s = settings({ interpolation, normalize });
      const { labels, histogram } = await labelMaps({ data: maps, shape: [3, h, w] }, { width: W, height: H, classes, background: 0, settings: s });
      const expected = reference(maps, h, w, H, W, classes, s, 0);
      t.equal(labels.data.length, W * H);
      const wrong = [...labels.data.keys()].filter((p) => labels.data[p] !== expected.labels[p] && !expected.nearThreshold.has(p));
      t.same(wrong, [], "every pixel (but those within 1e-5 of a threshold) as the reference");
      t.ok(new Set(expected.labels).size >= 3, "the case exercises several labels");
      t.equal(histogram.reduce((a, b) => a + b, 0), W * H, "the histogram counts every pixel");
      for (const id of [0, 7, 9, 15]) t.equal(histogram[id], labels.data.filter((v) => v === id).length, `histogram[${id}]`);
    });

t.test("ties go to the lower id whatever the order of the classes", async (t) => {
  const plane = noise(16, 3);
  const maps = new Float32Array(32);
  maps.set(plane, 0);
  maps.set(plane, 16);
  const classes = [{ id: 12, threshold: 0.2 }, { id: 4, threshold: 0.2 }];
  const { labels } = await labelMaps({ data: maps, shape: [2, 4, 4] }, { width: 4, height: 4, classes, background: 0, settings: settings() });
  t.ok(labels.data.includes(4), "the lower id labels the tied pixels");
  t.notOk(labels.data.includes(12), "the higher id none");
});

t.test("gt and ge at the threshold; background 0 or 255", async (t) => {
  const maps = { data: new Float32Array(16).fill(3), shape: [1, 4, 4] }; // normalises to 1 everywhere
  const request = (compare, background) => ({ width: 4, height: 4, classes: [{ id: 5, threshold: 1 }], background, settings: settings({ compare }) });
  t.same([...new Set((await labelMaps(maps, request("gt", 0))).labels.data)], [0], "1 > 1 is false: background 0");
  t.same([...new Set((await labelMaps(maps, request("gt", 255))).labels.data)], [255], "background 255 (Cityscapes' ignore)");
  t.same([...new Set((await labelMaps(maps, request("ge", 0))).labels.data)], [5], "1 ≥ 1");
  const zeros = { data: new Float32Array(16), shape: [1, 4, 4] };
  t.same([...new Set((await labelMaps(zeros, request("ge", 0))).labels.data)], [0], "an all-zero map normalises to 0, not NaN");
});

t.test("uncertain band: the highest score in [lo, hi) is 255", async (t) => {
  // At the image size (no upsampling): scores are the values / max.
  const values = [1, 0.65, 0.6, 0.59, 0.5, 0.49, 0.2, 0];
  const maps = { data: Float32Array.from(values), shape: [1, 1, 8] };
  const s = settings({ preset: "dataset-diffusion" });
  t.same(s.uncertain, [0.5, 0.6]);
  const { labels } = await labelMaps(maps, { width: 8, height: 1, classes: [{ id: 3, threshold: s.threshold.text }], background: 0, settings: s });
  t.same([...labels.data], [3, 3, 3, 255, 255, 0, 0, 0]);
});

t.test("small components are dropped, measured by bounding box or pixels", async (t) => {
  const W = 12, H = 8;
  const plane = new Float32Array(W * H);
  // A diagonal of 4 pixels (bbox 16, 4 pixels), a 3×3 block (bbox 9, 9 pixels), and one lone pixel.
  for (let i = 0; i < 4; i++) plane[i * W + i] = 1;
  for (let y = 4; y < 7; y++) for (let x = 6; x < 9; x++) plane[y * W + x] = 1;
  plane[1 * W + 10] = 1;
  const run = async (knobs) =>
    (await labelMaps({ data: plane, shape: [1, H, W] }, { width: W, height: H, classes: [{ id: 1, threshold: 0.5 }], background: 0, settings: settings(knobs) })).labels.data;
  const count = (labels) => labels.filter((v) => v === 1).length;
  t.equal(count(await run({})), 14, "all kept by default");
  t.equal(count(await run({ minComponentArea: 10, componentArea: "bbox" })), 4, "bbox ≥ 10: only the diagonal (bbox 16) stays");
  t.equal(count(await run({ minComponentArea: 5, componentArea: "pixels" })), 9, "pixels ≥ 5: only the block stays");
  t.equal(count(await run({ minComponentArea: 2, componentArea: "pixels" })), 13, "the lone pixel goes");
});

t.test("presets set each anchor's knobs; given knobs win", async (t) => {
  t.same(settings(), { preset: "ovam", ...MASK_PRESETS.ovam }, "default: ovam");
  t.same(settings().threshold, { text: 0.4, token: 0.75 }, "0.4 for words, 0.75 for optimised tokens");
  t.match(settings({ preset: "daam" }), { interpolation: "bicubic", normalize: "minmax", compare: "gt", threshold: { text: 0.4, token: 0.4 } });
  t.match(settings({ preset: "ovam-dataset" }), { interpolation: "bicubic", normalize: "max", threshold: { text: 0.75, token: 0.75 } });
  t.match(settings({ preset: "thesis" }), { interpolation: "bicubic", normalize: "max", threshold: { text: 0.4 } });
  t.match(settings({ preset: "daam", threshold: 0.3 }), { normalize: "minmax", threshold: { text: 0.3, token: 0.3 } });
  t.match(settings({ threshold: { token: 0.9 } }), { threshold: { text: 0.4, token: 0.9 } });
  t.throws(() => settings({ preset: "nope" }), InvalidOptionError);
  t.throws(() => settings({ uncertain: [0.6, 0.5] }), InvalidOptionError);
  const error = (() => {
    try {
      settings({ threshold: 2 });
    } catch (e) {
      return e;
    }
  })();
  t.match(error, { option: "masks.threshold", value: 2 }, "the path and value named");
});

t.test("bad requests are InvalidOptionErrors", async (t) => {
  const maps = { data: new Float32Array(8), shape: [2, 2, 2] };
  const base = { width: 4, height: 4, background: 0, settings: settings() };
  await t.rejects(labelMaps(maps, { ...base, classes: [{ id: 1, threshold: 0.5 }] }), InvalidOptionError, "one class per map");
  await t.rejects(labelMaps(maps, { ...base, classes: [{ id: 1, threshold: 0.5 }, { id: 1, threshold: 0.5 }] }), InvalidOptionError, "distinct ids");
  await t.rejects(labelMaps(maps, { ...base, classes: [{ id: 0, threshold: 0.5 }, { id: 1, threshold: 0.5 }] }), InvalidOptionError, "not the background");
  await t.rejects(labelMaps(maps, { ...base, classes: [{ id: 255, threshold: 0.5 }, { id: 1, threshold: 0.5 }] }), InvalidOptionError, "not 255");
});

t.test("palette PNGs: encodeIndexed, decodeIndexedPNG and an independent reader agree", async (t) => {
  const palette = ovam.dataset.vocPalette();
  t.same([...palette.subarray(3, 6)], [128, 0, 0], "VOC 1 (aeroplane)");
  t.same([...palette.subarray(15 * 3, 15 * 3 + 3)], [192, 128, 128], "VOC 15 (person)");
  t.same([...palette.subarray(255 * 3)], [224, 224, 192], "VOC 255 (void)");
  const indices = Uint8Array.from({ length: 6 * 5 }, (_, i) => [0, 7, 15, 255][i % 4]);
  const png = await encodeIndexed(6, 5, indices, palette);
  const own = await decodeIndexedPNG(png);
  t.same([...own.indices], [...indices]);
  const other = readPalettePNG(png);
  t.match(other, { width: 6, height: 5, bitDepth: 8, colorType: 3 });
  t.same([...other.indices], [...indices], "indices");
  t.same([...other.palette], [...palette], "palette");
  await t.rejects(decodeIndexedPNG(await ovam.encodeGray8(2, 2, new Uint8Array(4))), /colour type 0 \(grey\) is not supported/);
});
