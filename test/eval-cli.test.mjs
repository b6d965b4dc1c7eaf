// `ovam eval` as a child process on the eval fixtures written as folders: report.json equal to
// evaluate()'s report, the CSVs parsed back, curve.png decoded; usage errors; and
// examples/thesis.mjs run end to end at a small size.
import t from "tap";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";

import { fixtures, readSafetensors, root } from "./helpers/golden.mjs";

const require = createRequire(import.meta.url);
const ovam = require(path.join(root, "dist", "index.js"));
const { npyFloat32 } = require(path.join(root, "dist", "cli", "output.js"));
const cli = path.join(root, "dist", "cli.js");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-eval-cli-"));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

const golden = JSON.parse(fs.readFileSync(path.join(fixtures, "eval", "golden.json"), "utf8"));
const tensors = readSafetensors(path.join(fixtures, "eval", "golden.safetensors"));
const { width: W, height: H } = golden;
const caseA = golden.cases.find((c) => c.label === "binary_max_gt");
const semantic = golden.cases.find((c) => c.label === "semantic_minmax_bg0.5");

const [pred, gt] = [path.join(tmp, "pred"), path.join(tmp, "gt")];
for (const [i, it] of caseA.items.entries()) {
  const id = `img${String(i).padStart(2, "0")}`;
  fs.mkdirSync(path.join(pred, id), { recursive: true });
  for (const [k, name] of Object.entries(it.maps)) fs.writeFileSync(path.join(pred, id, `${k}.map.npy`), npyFloat32(tensors[name].data, [H, W]));
  fs.mkdirSync(gt, { recursive: true });
  fs.writeFileSync(path.join(gt, `${id}.png`), await ovam.encodeGray8(W, H, tensors[it.gt].data));
}
const run = (args) => spawnSync(process.execPath, [cli, ...args], { cwd: tmp, encoding: "utf8", timeout: 300_000 });
const parseCSV = (text) => text.trim().split("\n").map((line) => line.split(","));

t.test("ovam eval: files and table", async (t) => {
  const out = path.join(tmp, "report");
  const r = run(["eval", pred, "--truth", gt, "--out", out, "--protocol", "both", "--normalize", "minmax", "--background", "0.5"]);
  t.equal(r.status, 0, r.stderr);
  const api = await ovam.evaluate({ predictions: pred, truth: gt }, { protocol: "both", normalize: "minmax", backgroundScore: 0.5 });
  const report = JSON.parse(fs.readFileSync(path.join(out, "report.json"), "utf8"));
  t.same(report, JSON.parse(JSON.stringify(api)), "report.json is evaluate()'s report");
  t.same(report.semantic.confusion, semantic.result.confusion, "the semantic fixture's confusion matrix, from files");

  const perClass = parseCSV(fs.readFileSync(path.join(out, "per-class.csv"), "utf8"));
  t.same(perClass[0], ["class", "pairs", "iou_at_0.5", "max_iou", "argmax_tau", "auc", "semantic_iou"]);
  for (const row of perClass.slice(1, 4)) {
    const k = row[0];
    t.same(row.slice(1, 6).map(Number), [api.binary.pairs[k], api.binary.at.iou[k], api.binary.per_class[k].max, api.binary.per_class[k].argmax_tau, api.binary.per_class[k].auc], `per-class row ${k}`);
    t.equal(Number(row[6]), api.semantic.iou[k]);
  }
  t.same(perClass.at(-2).slice(0, 6).map((v, i) => (i < 2 ? v : Number(v))), ["mean", "", api.binary.at.miou, api.binary.summary.max, api.binary.summary.argmax_tau, api.binary.summary.auc]);
  const curve = parseCSV(fs.readFileSync(path.join(out, "curve.csv"), "utf8"));
  t.equal(curve.length, 102, "a header and 101 thresholds");
  t.same(curve[0].slice(0, 6), ["threshold", "miou", "overall", "iou:1", "p5:1", "p95:1"]);
  curve.slice(1).forEach((row, k) => {
    if (Number(row[0]) !== api.binary.thresholds[k] || Number(row[1]) !== api.binary.miou[k] || Number(row[3]) !== api.binary.iou["1"][k]) t.fail(`curve.csv row ${k}`);
  });
  const png = await ovam.decodePNG(fs.readFileSync(path.join(out, "curve.png")));
  t.same([png.width, png.height, png.channels], [800, 500, 3], "curve.png 800×500 RGB");
  // The mIoU line is black, and the plot has the tab10 colour of the first class somewhere.
  const colours = new Set();
  for (let i = 0; i < png.width * png.height; i++) colours.add(png.data.subarray(i * 3, i * 3 + 3).join(","));
  t.ok(colours.has("0,0,0") && colours.has("31,119,180"), "black mIoU and the first class's colour are drawn");
  t.match(r.stdout, /max IoU/);
  t.match(r.stdout, /mIoU@0\.50/);
  t.match(r.stdout, /Semantic protocol/);
});

t.test("ovam eval: --json and errors", async (t) => {
  const r = run(["eval", pred, "--truth", gt, "--json", "--classes", "car=1"]);
  t.equal(r.status, 0, r.stderr);
  const result = r.stdout.trim().split("\n").map((l) => JSON.parse(l)).find((x) => x.event === "result");
  t.equal(result.items, caseA.items.length);
  t.equal(run(["eval", pred]).status, 2, "no --truth");
  t.equal(run(["eval", pred, "--truth", gt, "--classes", "car"]).status, 2, "--classes without ids");
  const missing = run(["eval", pred, "--truth", path.join(tmp, "nowhere")]);
  t.equal(missing.status, 1);
  t.match(missing.stderr, /ERR_OVAM_NOT_FOUND/);
  const off = run(["eval", pred, "--truth", gt, "--threshold", "0.555"]);
  t.equal(off.status, 1);
  t.match(off.stderr, /multiple of 1\/100/);
});

t.test("examples/thesis.mjs runs end to end and prints the thesis's table", async (t) => {
  const out = path.join(tmp, "thesis");
  const r = spawnSync(process.execPath, [path.join(root, "examples", "thesis.mjs"), "--train", "1", "--test", "1", "--steps", "2", "--epochs", "2", "--out", out], { encoding: "utf8", timeout: 300_000 });
  t.equal(r.status, 0, r.stderr);
  for (const row of ["car", "person", "light", "mean"]) t.match(r.stdout, new RegExp(`^${row} +[0-9.–]`, "m"), `a row for ${row}`);
  t.match(r.stdout, /DAAM max.*Linear DAAM max.*OVAM token max/);
  t.match(r.stdout, /mean nothing/);
  t.same([...(await ovam.loadTokens(path.join(out, "bank.safetensors"))).keys()], ["car", "person", "light"]);
  t.ok(fs.existsSync(path.join(out, "OVAM-token", "curve.png")));
});
