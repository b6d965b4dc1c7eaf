// `ovam eval` on a dataset folder: a tiny dataset made by ovam.dataset.run on the bundled model,
// ground truth written here; each item scored for the classes its manifest line names, equal to
// evaluate() of the same maps (or labels) given in memory; the command line; bad inputs.
import t from "tap";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";

import { root, readSafetensors } from "./helpers/golden.mjs";
import { manifest } from "./helpers/dataset.mjs";
import { readPalettePNG } from "./helpers/palette-png.mjs";

const require = createRequire(import.meta.url);
const ovam = require(path.join(root, "dist", "index.js"));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-eval-dataset-"));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

// Two images of one class each, one of both classes (a prompts file names them).
fs.writeFileSync(
  path.join(tmp, "prompts.jsonl"),
  ['{"prompt": "a car", "classes": ["car"]}', '{"prompt": "a dog", "classes": ["dog"]}', '{"prompt": "a car and a dog", "classes": ["car", "dog"]}'].join("\n"),
);
const spec = { format: "voc", classes: [{ name: "car" }, { name: "dog" }], prompts: { file: "prompts.jsonl" }, generate: { steps: 2 }, save: { maps: "float32" } };
const sd = await ovam.load();
const out = path.join(tmp, "set");
await ovam.dataset.run(spec, { out, baseDir: tmp, pipeline: sd });
sd.dispose();
const lines = manifest(out);

// Ground truth by hand: car (7) fills the top half, dog (12) the left half of the bottom, 255 a corner.
const truth = new Uint8Array(64 * 64);
for (let y = 0; y < 64; y++) for (let x = 0; x < 64; x++) truth[y * 64 + x] = y < 32 ? 7 : x < 32 ? 12 : y > 60 && x > 60 ? 255 : 0;
const gt = path.join(tmp, "gt");
fs.mkdirSync(gt);
for (const line of lines) fs.writeFileSync(path.join(gt, `${line.id}.png`), await ovam.encodeGray8(64, 64, truth));

// The same items in memory: maps from the maps files, named by class, scored for the manifest's classes.
const names = { 7: "car", 12: "dog" };
const inMemory = lines.map((line) => {
  const file = readSafetensors(path.join(out, line.files.maps));
  const maps = Object.fromEntries(line.classes.map((id) => [names[id], { data: file[names[id]].data, width: 8, height: 8 }]));
  return { id: line.id, maps, truth: { data: truth, width: 64, height: 64 } };
});
const classes = { car: 7, dog: 12 };

t.test("a dataset folder is scored by its maps, for the classes of each manifest line", async (t) => {
  t.same(lines.map((l) => l.classes), [[7], [12], [7, 12]]);
  const report = await ovam.evaluate({ predictions: out, truth: gt }, { protocol: "both" });
  const expected = await ovam.evaluate(inMemory, { protocol: "both", classes });
  t.same(report, expected, "equal to evaluate() of the saved maps in memory, class ids from dataset.json");
  t.same(report.binary.per_item.map((p) => [p.id, p.class]), [["000000", "car"], ["000001", "dog"], ["000002", "car"], ["000002", "dog"]], "(item, class) pairs from the manifest");
  t.same(report.settings.classes, classes);
  t.equal(report.items, 3);
});

t.test("--labels: a labels folder of the dataset, every manifest class scored even where it labels nothing", async (t) => {
  const relabelled = await ovam.dataset.relabel(out, { masks: { threshold: 1 }, name: "labels-none" });
  const report = await ovam.evaluate({ predictions: out, truth: gt, labels: path.basename(relabelled.folder) });
  t.same(report.binary.per_item.map((p) => [p.id, p.class]), [["000000", "car"], ["000001", "dog"], ["000002", "car"], ["000002", "dog"]], "classes nothing is labelled with are scored too");
  t.ok(report.binary.per_item.every((p) => p.iou === 0), "nothing predicted: IoU 0 for every pair, not left out");
  const labelled = await ovam.evaluate({ predictions: out, truth: gt, labels: "labels" }, { protocol: "semantic" });
  const memory = lines.map((line) => ({ id: line.id, labels: { data: readPalettePNG(fs.readFileSync(path.join(out, line.files.label))).indices, width: 64, height: 64 }, truth: { data: truth, width: 64, height: 64 } }));
  t.same(labelled.semantic, (await ovam.evaluate(memory, { protocol: "semantic", classes })).semantic, "the dataset's own labels, semantic protocol");
});

t.test("ovam eval DIR --truth GT: the command line", async (t) => {
  const report = path.join(tmp, "report");
  const r = spawnSync(process.execPath, [path.join(root, "dist", "cli.js"), "eval", out, "--truth", gt, "--out", report, "--protocol", "both"], { encoding: "utf8", timeout: 300_000 });
  t.equal(r.status, 0, r.stderr);
  t.same(JSON.parse(fs.readFileSync(path.join(report, "report.json"), "utf8")), JSON.parse(JSON.stringify(await ovam.evaluate({ predictions: out, truth: gt }, { protocol: "both" }))));
  t.match(r.stdout, /car/);
  const bad = spawnSync(process.execPath, [path.join(root, "dist", "cli.js"), "eval", gt, "--truth", gt, "--labels", "labels"], { encoding: "utf8" });
  t.equal(bad.status, 1);
  t.match(bad.stderr, /option "source\.labels" got 'labels'; accepted: only with a dataset folder/);
});

t.test("an image whose truth lacks a class it is scored for counts with I = 0, not left out", async (t) => {
  const none = path.join(tmp, "gt-none");
  fs.cpSync(gt, none, { recursive: true });
  fs.writeFileSync(path.join(none, "000000.png"), await ovam.encodeGray8(64, 64, new Uint8Array(64 * 64)));
  const report = await ovam.evaluate({ predictions: out, truth: none });
  t.same(report.binary.per_item.find((p) => p.id === "000000"), { id: "000000", class: "car", iou: 0 }, "its normalised map passes 0.5 somewhere: the union is the prediction");
  t.equal(report.items, 3);
  t.same(report.skipped, []);
});

t.test("bad inputs: missing truth, truth of another shape, a missing labels folder", async (t) => {
  const partial = path.join(tmp, "gt-partial");
  fs.cpSync(gt, partial, { recursive: true });
  fs.rmSync(path.join(partial, "000001.png"));
  await t.rejects(ovam.evaluate({ predictions: out, truth: partial }), { code: "ERR_OVAM_NOT_FOUND", message: /ground truth of item "000001"/ });
  const wide = path.join(tmp, "gt-wide");
  fs.mkdirSync(wide);
  for (const line of lines) fs.writeFileSync(path.join(wide, `${line.id}.png`), await ovam.encodeGray8(32, 64, new Uint8Array(32 * 64)));
  await t.rejects(ovam.evaluate({ predictions: out, truth: wide }), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /8×8 but the ground truth is 32×64/ });
  await t.rejects(ovam.evaluate({ predictions: out, truth: gt, labels: "labels-missing" }), { code: "ERR_OVAM_NOT_FOUND", message: /no labels folder "labels-missing"/ });
});
