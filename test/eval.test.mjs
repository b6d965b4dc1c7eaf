// Segmentation evaluation against test/fixtures/eval: every case through evaluate() (integer
// counts equal, curves within 1e-6), the bilinear resize bit for bit, ground truth and maps read
// from folders (class-index, RGB and RGBA-alpha PNGs, .npy maps), bad inputs, and `ovam eval`'s
// files decoded and checked against the API's report.
import t from "tap";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";

import { fixtures, readSafetensors, root } from "./helpers/golden.mjs";
import { writePNG } from "./helpers/png.mjs";

const require = createRequire(import.meta.url);
const { evaluate } = require(path.join(root, "dist", "eval", "evaluate.js"));
const { resizeBilinear } = require(path.join(root, "dist", "resize.js"));
const { semanticPrediction } = require(path.join(root, "dist", "eval", "semantic.js"));
const { encodeGray8, encodeRGB, decodePNG } = require(path.join(root, "dist", "png.js"));
const { npyFloat32 } = require(path.join(root, "dist", "cli", "output.js"));

const dir = path.join(fixtures, "eval");
const golden = JSON.parse(fs.readFileSync(path.join(dir, "golden.json"), "utf8"));
const tensors = readSafetensors(path.join(dir, "golden.safetensors"));
const { width: W, height: H } = golden;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-eval-"));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

const plane = (name) => ({ data: tensors[name].data, width: tensors[name].shape[1], height: tensors[name].shape[0] });
const shared = Object.fromEntries(golden.cases.filter((c) => Array.isArray(c.items)).map((c) => [c.items[0].gt.split(".")[0], c.items]));
const itemsOf = (c) => (Array.isArray(c.items) ? c.items : shared[c.items]);
const asItems = (list) => list.map((it, i) => ({ id: String(i), truth: plane(it.gt), maps: Object.fromEntries(Object.entries(it.maps).map(([k, n]) => [k, plane(n)])) }));

// Largest |a − b| over two curves; null must meet null.
function curveError(t, a, b, what) {
  t.equal(a.length, b.length, `${what}: length`);
  let error = 0;
  a.forEach((v, i) => {
    if (v === null || b[i] === null) t.equal(v, b[i], `${what}[${i}] null where the reference is`);
    else error = Math.max(error, Math.abs(v - b[i]));
  });
  return error;
}

for (const c of golden.cases.filter((c) => c.protocol === "binary")) {
  t.test(`binary: ${c.label}`, async (t) => {
    const report = await evaluate(asItems(itemsOf(c)), { normalize: c.normalize, compare: c.compare, steps: c.steps, ignore: golden.ignore });
    const r = report.binary;
    const ref = c.result;
    t.same(Object.keys(r.I), Object.keys(ref.I), "classes");
    for (const k of Object.keys(ref.I)) {
      t.same(r.I[k], ref.I[k], `I[${k}] exact`);
      t.same(r.U[k], ref.U[k], `U[${k}] exact`);
    }
    let error = curveError(t, r.thresholds, ref.thresholds, "thresholds");
    for (const k of Object.keys(ref.iou)) {
      error = Math.max(error, curveError(t, r.iou[k], ref.iou[k], `iou[${k}]`));
      for (const p of ["p5", "p95"]) error = Math.max(error, curveError(t, r.percentiles[k][p], ref.percentiles[k][p], `${p}[${k}]`));
      for (const f of ["max", "argmax_tau", "auc"]) error = Math.max(error, Math.abs(r.per_class[k][f] - ref.per_class[k][f]));
    }
    error = Math.max(error, curveError(t, r.miou, ref.miou, "miou"), curveError(t, r.overall, ref.overall, "overall"));
    for (const f of ["max", "argmax_tau", "auc"]) error = Math.max(error, Math.abs(r.summary[f] - ref.summary[f]));
    t.ok(error <= 1e-6, `curves and summaries within 1e-6 (max error ${error})`);
    t.equal(r.at.threshold, Math.fround(0.5), "OVAM's columns at τ = 0.5");
    t.equal(r.at.miou, r.miou[c.steps / 2]);
  });
}

t.test("bilinear resize (align_corners=False) equals torch's upsampling bit for bit", async (t) => {
  const c = golden.cases.find((c) => c.upsample === "bilinear");
  c.items.forEach((it, i) => {
    for (const [k, name] of Object.entries(it.maps)) {
      const resized = resizeBilinear(plane(name), W, H);
      const ref = tensors[c.upsampled[i].maps[k]].data;
      t.ok(resized.data.every((v, j) => v === ref[j]), `${name} → ${c.upsampled[i].maps[k]}`);
    }
  });
});

for (const c of golden.cases.filter((c) => c.protocol === "semantic")) {
  t.test(`semantic: ${c.label}`, async (t) => {
    const items = itemsOf(c);
    items.forEach((it, i) => {
      const maps = new Map(Object.entries(it.maps).map(([k, n]) => [Number(k), tensors[n].data]));
      const labels = semanticPrediction(maps, W * H, { normalize: c.normalize, backgroundScore: c.background_score, ignore: golden.ignore }, String);
      const ref = tensors[c.predictions[i]].data;
      t.ok(labels.every((v, j) => v === ref[j]), `predicted labels of item ${i}`);
    });
    const report = await evaluate(asItems(items), { protocol: "semantic", normalize: c.normalize, backgroundScore: c.background_score });
    const s = report.semantic;
    t.same(s.labels, ["background", "1", "2", "3"]);
    t.same(s.confusion, c.result.confusion, "confusion matrix exact");
    const keyed = Object.fromEntries(Object.entries(s.iou).map(([k, v]) => [k === "background" ? "0" : k, v]));
    t.same(Object.keys(keyed), Object.keys(c.result.iou));
    const error = Math.max(
      ...Object.keys(c.result.iou).map((k) => Math.abs(keyed[k] - c.result.iou[k])),
      Math.abs(s.miou - c.result.miou),
      Math.abs(s.pixel_accuracy - c.result.pixel_accuracy),
    );
    t.ok(error <= 1e-6, `IoU, mIoU, accuracy within 1e-6 (max error ${error})`);
    t.equal(s.background_score, c.result.background_score, "background score in float32");
  });
}

// ---- folders --------------------------------------------------------------------------------

const caseA = golden.cases.find((c) => c.label === "binary_max_gt");

async function writeFolders(root, truthAs) {
  const [pred, gt] = [path.join(root, "pred"), path.join(root, "gt")];
  fs.mkdirSync(pred, { recursive: true });
  fs.mkdirSync(gt, { recursive: true });
  for (const [i, it] of caseA.items.entries()) {
    const id = `item${String(i).padStart(2, "0")}`;
    fs.mkdirSync(path.join(pred, id));
    for (const [k, name] of Object.entries(it.maps)) fs.writeFileSync(path.join(pred, id, `${k}.map.npy`), npyFloat32(tensors[name].data, [H, W]));
    const labels = tensors[it.gt].data;
    if (truthAs === "labels") fs.writeFileSync(path.join(gt, `${id}.png`), await encodeGray8(W, H, labels));
    else {
      // DAAM's layout: <id>/<class>.gt.png, the object in the alpha channel.
      fs.mkdirSync(path.join(gt, id));
      for (const k of Object.keys(it.maps)) fs.writeFileSync(path.join(gt, id, `${k}.gt.png`), rgbaPNG(labels.map((v) => (v === Number(k) ? 255 : 0))));
    }
  }
  return { pred, gt };
}

// An RGBA PNG (colour type 6), black, with the object in the alpha channel.
const rgbaPNG = (alpha) => writePNG(W, H, 4, [...alpha].flatMap((a) => [0, 0, 0, a]));

t.test("folders: .npy maps against class-index PNGs and against DAAM's RGBA masks", async (t) => {
  for (const truthAs of ["labels", "masks"]) {
    const { pred, gt } = await writeFolders(path.join(tmp, truthAs), truthAs);
    const report = await evaluate({ predictions: pred, truth: gt }, { normalize: "max", compare: "gt" });
    // Pixels with gt 255 are left out with class-index truth; masks have none, so unions may grow.
    if (truthAs === "labels") for (const k of Object.keys(caseA.result.I)) t.same([report.binary.I[k], report.binary.U[k]], [caseA.result.I[k], caseA.result.U[k]], `${truthAs}: class ${k} counts`);
    else for (const k of Object.keys(caseA.result.I)) t.same(report.binary.I[k], caseA.result.I[k], `${truthAs}: class ${k} intersections`);
    t.equal(report.items, caseA.items.length);
  }
});

t.test("RGB ground truth: non-zero is the object", async (t) => {
  const [pred, gt] = [path.join(tmp, "rgb", "pred"), path.join(tmp, "rgb", "gt")];
  fs.mkdirSync(path.join(pred, "x"), { recursive: true });
  fs.mkdirSync(gt, { recursive: true });
  const map = new Float32Array(W * H).map((_, i) => (i % W < 32 ? 1 : 0));
  fs.writeFileSync(path.join(pred, "x", "car.map.npy"), npyFloat32(map, [H, W]));
  const rgb = new Uint8Array(W * H * 3);
  for (let i = 0; i < W * H; i++) if (i % W < 16) rgb[i * 3 + (i % 3)] = 7; // any channel non-zero
  fs.writeFileSync(path.join(gt, "x.png"), await encodeRGB(W, H, rgb));
  const report = await evaluate({ predictions: pred, truth: gt });
  t.equal(report.binary.I.car[50], 16 * H, "intersection: the object's columns");
  t.equal(report.binary.U.car[50], 32 * H, "union: the predicted columns");
});

// ---- bad inputs -----------------------------------------------------------------------------

const truth = { data: new Uint8Array(W * H).fill(1), width: W, height: H };
const ramp = () => ({ data: Float32Array.from({ length: W * H }, (_, i) => i / (W * H)), width: W, height: H });

t.test("bad inputs are typed errors or documented results", async (t) => {
  const nan = ramp();
  nan.data[5] = NaN;
  await t.rejects(evaluate([{ truth, maps: { 1: nan } }]), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /NaN or infinite/ }, "NaN map");
  await t.rejects(evaluate([{ truth, maps: { 1: { data: new Float32Array(10 * 10), width: 10, height: 10 } } }]), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /aspect ratio/ }, "ground truth of another size");
  await t.rejects(evaluate([{ truth, maps: { car: ramp() } }]), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /class id/ }, "class name without an id against labels");
  await t.rejects(evaluate([{ truth, maps: { 1: ramp() } }], { threshold: 0.123 }), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /multiple of 1\/100/ });
  await t.rejects(evaluate([{ truth, maps: { 1: ramp() } }], { steps: 0 }), { code: "ERR_OVAM_INVALID_OPTION" });
  await t.rejects(evaluate([{ truth: { 1: truth }, maps: { 1: ramp(), 2: ramp() } }]), { code: "ERR_OVAM_NOT_FOUND" }, "no mask for a scored class");
  await t.rejects(evaluate([{ truth: { 1: truth }, maps: { 1: ramp() } }], { protocol: "semantic" }), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /class-index/ });
  await t.rejects(evaluate({ predictions: path.join(tmp, "nowhere"), truth: tmp }), { code: "ERR_OVAM_NOT_FOUND" }, "missing folder");
  const { pred } = await writeFolders(path.join(tmp, "missing"), "labels");
  await t.rejects(evaluate({ predictions: pred, truth: path.join(tmp, "rgb", "gt") }), { code: "ERR_OVAM_NOT_FOUND", message: /item00/ }, "missing ground-truth file");

  // An image without its target: scored, I = 0 and U = the predicted pixels; nothing predicted and
  // no target is an empty union, left out of the per-item percentiles and of a class's IoU.
  const background = { data: new Uint8Array(W * H), width: W, height: H };
  const flat = { data: new Float32Array(W * H), width: W, height: H };
  const report = await evaluate([{ id: "a", truth: background, maps: { 1: ramp() } }, { id: "b", truth: background, maps: { 2: flat } }]);
  t.equal(report.binary.I["1"][50], 0, "no target: no intersection");
  const r = ramp().data;
  const above = r.filter((v) => Math.fround(v / r[r.length - 1]) > 0.5).length;
  t.equal(report.binary.U["1"][50], above, "no target: the union is the prediction");
  t.equal(report.binary.iou["2"][0], null, "empty union: IoU null");
  t.equal(report.binary.percentiles["2"].p5[0], null, "empty union: no percentile");
  t.same(report.binary.per_item.find((p) => p.id === "b").iou, null);
  t.same(report.binary.miou[0], report.binary.iou["1"][0], "mIoU over defined classes only");
  const skipped = await evaluate([{ id: "s", truth }]);
  t.same(skipped.skipped, [{ id: "s", reason: "no maps and no predicted labels" }], "an item with nothing to score is reported, not scored");
});
