// ovam.dataset on the bundled tiny model: a 3-class × 4-image spec end to end (files, palettes,
// label values, maps), the plan, determinism, shards, the VOC layout, `masks` re-labelling and
// OVAM's filter.
import t from "tap";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

import { root, readSafetensors } from "./helpers/golden.mjs";
import { readPalettePNG } from "./helpers/palette-png.mjs";
import { differences, manifest, smallSpec, snapshot, writeToken } from "./helpers/dataset.mjs";

const require = createRequire(import.meta.url);
const ovam = require(path.join(root, "dist", "index.js"));
const { dataset } = ovam;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-dataset-"));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
writeToken(path.join(tmp, "bus.safetensors"), 32);
const sd = await ovam.load();
t.teardown(() => sd.dispose());
const run = (spec, out, options = {}) => dataset.run(spec, { out: path.join(tmp, out), baseDir: tmp, pipeline: sd, ...options });

const full = await run(smallSpec(), "full");

t.test("the plan: ids, prompts, classes and seeds from (spec, index)", async (t) => {
  const spec = await dataset.loadSpec(smallSpec(), { baseDir: tmp });
  const items = dataset.planItems(spec);
  t.equal(items.length, 12);
  t.same(items.slice(0, 2), [
    { index: 0, id: "car-0000", prompt: "a photograph of a car", classes: [7], seed: 10 },
    { index: 1, id: "car-0001", prompt: "a car in a city street", classes: [7], seed: 11 },
  ]);
  t.same(items[11], { index: 11, id: "bus-0003", prompt: "a bus in a city street", classes: [6], seed: 21 });
  t.same(dataset.planItem(spec, 5), items[5], "item i alone equals the plan's item i");
  const shared = await dataset.loadSpec(smallSpec({ seeds: "shared-across-classes" }), { baseDir: tmp });
  t.same(dataset.planItems(shared).map((i) => i.seed), [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3], "the same seeds for every class");
  t.same(spec.classes.map((c) => [c.id, c.threshold]), [[7, 0.4], [15, 0.4], [6, 0.75]], "VOC ids from names; token classes get the token threshold");
});

t.test("the README's example specs are valid", async (t) => {
  const { model, ...urban } = JSON.parse(fs.readFileSync(path.join(root, "examples", "urban-thesis.json"), "utf8"));
  t.equal(model, "../sd2-base", "SD 2-base, downloaded beside examples/");
  const spec = await dataset.loadSpec(urban);
  t.same(spec.classes.map((c) => [c.name, c.id, c.attribute]), [["car", 13, { text: "car" }], ["person", 11, { text: "person" }], ["traffic light", 6, { text: "light" }], ["rider", 12, { text: "rider" }]]);
  t.equal(dataset.itemCount(spec), 200);
  t.same(dataset.planItem(spec, 100), { index: 100, id: "traffic-light-0000", prompt: "A traffic light in an urban environment", classes: [6], seed: 0 });
  t.match(spec.masks, { preset: "thesis" });
  const tiny = await dataset.loadSpec(path.join(root, "examples", "tiny-voc.json"));
  t.equal(dataset.itemCount(tiny), 12);
});

t.test("3 classes × 4 images: every file, palettes, label values, maps", async (t) => {
  const out = path.join(tmp, "full");
  t.match(full, { planned: 12, made: 12, skipped: 0, remaining: 0 });
  const record = JSON.parse(fs.readFileSync(path.join(out, "dataset.json"), "utf8"));
  t.match(record, { format: "ovam-dataset/1", background: 0, ignore: 255, items: 12 });
  t.same(record.classes.map((c) => [c.id, c.name, c.color]), [[7, "car", [128, 128, 128]], [15, "person", [192, 128, 128]], [6, "bus", [0, 128, 128]]]);
  const lines = manifest(out);
  t.same(lines.map((l) => l.id), dataset.planItems(await dataset.loadSpec(smallSpec(), { baseDir: tmp })).map((i) => i.id), "one line per item");
  t.same(fs.readFileSync(path.join(out, "splits", "train.txt"), "utf8").trim().split("\n"), lines.map((l) => l.id), "the split lists every item");
  const palette = Buffer.from(ovam.dataset.vocPalette());
  for (const line of lines) {
    const [id] = line.classes;
    const name = { 7: "car", 15: "person", 6: "bus" }[id];
    for (const file of Object.values(line.files)) t.ok(fs.existsSync(path.join(out, file)), `${file} exists`);
    const label = readPalettePNG(fs.readFileSync(path.join(out, line.files.label)));
    t.match(label, { width: 64, height: 64, bitDepth: 8, colorType: 3 }, `${line.id}: 8-bit palette PNG`);
    t.ok(label.palette.equals(palette), "the VOC palette");
    const values = new Set(label.indices);
    t.ok([...values].every((v) => v === id || v === 0 || v === 255), `${line.id}: values ${[...values]} ⊆ {${id}, 0, 255}`);
    t.ok(values.has(id), `${line.id}: its class is labelled somewhere (the map's maximum passes the threshold)`);
    const fraction = label.indices.filter((v) => v === id).length / (64 * 64);
    t.equal(line.foreground[name], fraction, "the manifest's foreground fraction is the label's");
    const image = await ovam.decodePNG(fs.readFileSync(path.join(out, line.files.image)));
    t.match(image, { width: 64, height: 64, channels: 3 });
    const maps = readSafetensors(path.join(out, line.files.maps));
    const tensor = { 7: "car", 15: "person", 6: "bus" }[id];
    t.match(maps[tensor], { dtype: "F16", shape: [8, 8] }, "the map at attention resolution, float16");
  }
  const header = JSON.parse(readSafetensorsHeader(path.join(out, lines[0].files.maps)).__metadata__.ovam);
  t.match(header, { format: "ovam-dataset-maps/1", id: "car-0000", width: 64, height: 64, classes: [{ tensor: "car", id: 7, name: "car", attribute: { text: "car" } }] });
});

function readSafetensorsHeader(file) {
  const buf = fs.readFileSync(file);
  return JSON.parse(buf.subarray(8, 8 + Number(buf.readBigUInt64LE(0))).toString("utf8"));
}

t.test("two runs of one spec give byte-identical files", async (t) => {
  await run(smallSpec(), "again");
  t.same(differences(snapshot(path.join(tmp, "full")), snapshot(path.join(tmp, "again"))), [], "no file differs (manifest compared without timings)");
});

t.test("shards 0/2 and 1/2 together equal the whole run", async (t) => {
  const zero = await run(smallSpec(), "sharded", { shard: "0/2" });
  t.match(zero, { made: 6, remaining: 0 });
  t.same(manifest(path.join(tmp, "sharded")).map((l) => l.index), [0, 2, 4, 6, 8, 10]);
  await run(smallSpec(), "sharded", { shard: { index: 1, count: 2 } });
  t.same(differences(snapshot(path.join(tmp, "full")), snapshot(path.join(tmp, "sharded"))), []);
  await t.rejects(run(smallSpec(), "sharded", { shard: "2/2" }), { code: "ERR_OVAM_INVALID_OPTION", option: "shard" });
});

t.test("limit, then resume: the rest, nothing twice", async (t) => {
  t.match(await run(smallSpec(), "limited", { limit: 5 }), { made: 5, remaining: 7 });
  t.match(await run(smallSpec(), "limited"), { made: 7, skipped: 5, remaining: 0 });
  t.match(await run(smallSpec(), "limited"), { made: 0, skipped: 12 });
  t.same(differences(snapshot(path.join(tmp, "full")), snapshot(path.join(tmp, "limited"))), []);
});

t.test("another spec in the same folder is refused", async (t) => {
  await t.rejects(run(smallSpec({ generate: { steps: 3 } }), "full"), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /another spec.*"spec\.generate"/ });
});

t.test("--layout voc: the VOCdevkit folders", async (t) => {
  const spec = smallSpec({ classes: [{ name: "car" }], prompts: { templates: ["a {class}"], perClass: 2 } });
  await run(spec, "voc", { layout: "voc" });
  const out = path.join(tmp, "voc");
  for (const file of ["JPEGImages/car-0000.png", "SegmentationClass/car-0001.png", "ImageSets/Segmentation/train.txt", "maps/car-0000.safetensors"])
    t.ok(fs.existsSync(path.join(out, file)), file);
  t.notOk(fs.existsSync(path.join(out, "images")), "no default-layout folders");
});

t.test("Cityscapes format: train ids, 255 background, Cityscapes colours", async (t) => {
  const spec = smallSpec({ format: "cityscapes", classes: [{ name: "car" }, { name: "traffic light", attribute: "light" }], prompts: { templates: ["a {class}"], perClass: 1 } });
  await run(spec, "cityscapes");
  const out = path.join(tmp, "cityscapes");
  const record = JSON.parse(fs.readFileSync(path.join(out, "dataset.json"), "utf8"));
  t.same(record.classes, [{ id: 13, name: "car", color: [0, 0, 142] }, { id: 6, name: "traffic light", color: [250, 170, 30] }]);
  t.equal(record.background, 255);
  for (const line of manifest(out)) {
    const label = readPalettePNG(fs.readFileSync(path.join(out, line.files.label)));
    t.ok([...new Set(label.indices)].every((v) => v === line.classes[0] || v === 255), `${line.id}: its train id and 255 only`);
  }
  t.equal(manifest(out)[1].prompt, "a traffic light", "the prompt says the name; the map is of the attribute text");
});

t.test("ovam masks: the same settings give the same labels; others a new folder", async (t) => {
  const out = path.join(tmp, "full");
  const same = await dataset.relabel(out, { name: "labels-same" });
  t.equal(same.count, 12);
  for (const line of manifest(out))
    t.ok(fs.readFileSync(path.join(out, "labels-same", `${line.id}.png`)).equals(fs.readFileSync(path.join(out, line.files.label))), `${line.id}: identical to labels/`);
  const daam = await dataset.relabel(out, { masks: { preset: "daam", threshold: 0.2 } });
  t.equal(path.basename(daam.folder), "labels-daam");
  t.match(JSON.parse(fs.readFileSync(path.join(daam.folder, "masks.json"), "utf8")), { settings: { preset: "daam", normalize: "minmax", threshold: { text: 0.2 } }, items: 12 });
  const low = await dataset.relabel(out, { masks: { threshold: 0.1 }, name: "labels-low" });
  for (const line of manifest(out)) {
    const lower = readPalettePNG(fs.readFileSync(path.join(low.folder, `${line.id}.png`))).indices;
    const before = readPalettePNG(fs.readFileSync(path.join(out, line.files.label))).indices;
    t.ok(before.every((v, i) => v === 0 || lower[i] === v), `${line.id}: every pixel labelled at the spec's threshold stays labelled at 0.1`);
  }
  await t.rejects(dataset.relabel(out, { name: "labels" }), { code: "ERR_OVAM_INVALID_OPTION", option: "name" });
});

t.test("dataset filter: uniform images out, per-class 5th–95th percentiles kept", async (t) => {
  const out = path.join(tmp, "full");
  const lines = manifest(out);
  const result = await dataset.filter(out);
  t.same(result.uniform, [], "no uniform image among the tiny model's noise");
  t.same([...result.kept, ...result.outliers].sort(), lines.map((l) => l.id).sort(), "every image kept or dropped");
  for (const [name, [lo, hi]] of Object.entries(result.bounds)) {
    const fractions = lines.filter((l) => name in l.foreground).map((l) => l.foreground[name]).sort((a, b) => a - b);
    // NumPy's linear percentile of 4 values: the 5th lies 15 % of the way from the first to the second.
    t.equal(lo, fractions[0] + 0.15 * (fractions[1] - fractions[0]), `${name}: 5th percentile`);
    t.equal(hi, fractions[2] + 0.85 * (fractions[3] - fractions[2]), `${name}: 95th percentile`);
  }
  t.same(fs.readFileSync(result.file, "utf8").split("\n").filter(Boolean), result.kept);
  t.equal(path.relative(out, result.file), path.join("splits", "train-filtered.txt"));
  t.ok(fs.existsSync(path.join(out, "splits", "train.txt")), "the train split stays");

  const copy = path.join(tmp, "filter-copy");
  fs.cpSync(out, copy, { recursive: true });
  fs.writeFileSync(path.join(copy, "images", "car-0001.png"), await ovam.encodeRGB(64, 64, new Uint8Array(64 * 64 * 3).fill(9)));
  const again = await dataset.filter(copy, { name: "clean" });
  t.same(again.uniform, ["car-0001"], "an image of one colour is dropped");
  t.notOk(again.kept.includes("car-0001"));
  t.ok(fs.existsSync(path.join(copy, "images", "car-0001.png")), "and not deleted");
});

t.test("the command line: ovam masks and ovam dataset filter", async (t) => {
  const { spawnSync } = await import("node:child_process");
  const cli = path.join(root, "dist", "cli.js");
  const out = path.join(tmp, "full");
  const records = (stdout) => stdout.trim().split("\n").map((l) => JSON.parse(l));
  const masks = spawnSync(process.execPath, [cli, "masks", out, "--preset", "ovam-dataset", "--uncertain", "0.3,0.5", "--json"], { encoding: "utf8" });
  t.equal(masks.status, 0, masks.stderr);
  t.match(records(masks.stdout).find((r) => r.event === "result"), { command: "masks", items: 12, settings: { preset: "ovam-dataset", uncertain: [0.3, 0.5] } });
  t.ok(fs.existsSync(path.join(out, "labels-ovam-dataset", "bus-0003.png")));
  const bad = spawnSync(process.execPath, [cli, "masks", out, "--uncertain", "0.6,0.5"], { encoding: "utf8" });
  t.equal(bad.status, 1);
  t.match(bad.stderr, /option "masks\.uncertain" got \[ 0\.6, 0\.5 \]; accepted: \[lo, hi\] with lo < hi/);
  const filter = spawnSync(process.execPath, [cli, "dataset", "filter", out, "--name", "cli-filtered"], { encoding: "utf8" });
  t.equal(filter.status, 0, filter.stderr);
  t.match(filter.stdout, /Kept \d+ images; dropped 0 of one uniform colour/);
  t.ok(fs.existsSync(path.join(out, "splits", "cli-filtered.txt")));
  const help = spawnSync(process.execPath, [cli, "dataset", "--help"], { encoding: "utf8" });
  t.match(help.stdout, /--shard i\/n/);
});
