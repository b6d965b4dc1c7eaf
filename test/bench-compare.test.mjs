// The benchmark comparison (issue 12): `node scripts/bench-compare.js OLD.json NEW.json` on two
// small results written here, its ratios, marks, added/removed cases and ceilings; bad inputs
// give one line with a stable code; `npm run bench -- --compare` checks its file before any build.
import t from "tap";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

import { root } from "./helpers/golden.mjs";

const script = path.join(root, "scripts", "bench-compare.js");
const { loadResult } = createRequire(import.meta.url)(script);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-bench-compare-"));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

function node(args) {
  const { status, stdout, stderr } = spawnSync(process.execPath, args, { cwd: root, encoding: "utf8", timeout: 30_000 });
  return { status, stdout, stderr };
}
function write(name, value) {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, typeof value === "string" ? value : JSON.stringify(value));
  return file;
}
const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const result = (sgemm, copy, cases, extra = {}) => ({
  device: "cpu",
  threads: 2,
  torch: "1.13.1",
  ceilings: { sgemm_gflops: sgemm, copy_gbs: copy },
  cases: cases.map(([model, name, seconds, flops, bytes]) => ({ model, case: name, median_s: seconds, flops, gflops_per_s: 0, bytes_read: bytes, note: "" })),
  ...extra,
});

// The two runs: the machine's SGEMM halves between them, its copy rate stays.
const ceilings = { old: [200, 40], new: [100, 40] };
const shared = [
  // model, case, old s, new s, FLOPs, bytes read
  ["sd15", "attribute 1-token, softmax, 30 steps", 2.0, 1.0, 5e8, 3.4e8],
  ["sd15", "UNet step (CFG batch 2), capture off", 1.0, 2.0, 3.6e11, 0],
  ["crf", "dense CRF 512x512, 2 labels, 1 thr", 0.5, 0.52, 0, 0],
];
const before = result(...ceilings.old, [...shared.map(([m, c, o, , f, b]) => [m, c, o, f, b]), ["sd15", "a removed case", 1, 0, 0]], {
  eval: { items: 1000, size: 512, thresholds: 101, seconds: 2.6, seconds_per_1000_items: 2.6 },
});
const after = result(...ceilings.new, [...shared.map(([m, c, , n, f, b]) => [m, c, n, f, b]), ["tiny-sd1", "an added case", 1, 0, 0]], {
  eval: { items: 100, size: 512, thresholds: 101, seconds: 0.4, seconds_per_1000_items: 4.0 },
});
const oldFile = write("old.json", before);
const newFile = write("new.json", after);

t.test("the change of every case found in both runs, against the ceilings' change", async (t) => {
  const { status, stdout, stderr } = node([script, oldFile, newFile]);
  t.equal(status, 0, stderr);
  const lines = stdout.split("\n");
  const line = (start) => lines.find((l) => l.startsWith(start)) ?? "";
  const times = (x) => `${x.toFixed(2)}×`;
  const percent = (x) => `${x >= 1 ? "+" : ""}${((x - 1) * 100).toFixed(1)} %`;

  const sgemm = ceilings.new[0] / ceilings.old[0];
  const copy = ceilings.new[1] / ceilings.old[1];
  t.match(line("SGEMM GFLOP/s"), `${times(sgemm)}  ${percent(sgemm)}`, "the SGEMM ceiling halved");
  t.match(line("copy GB/s"), `${times(copy)}  ${percent(copy)}`);

  for (const [model, name, o, n, flops, bytes] of shared) {
    const row = line(`${model.padEnd(10)}${name}`);
    const ratio = n / o;
    t.match(row, `${(o * 1e3).toFixed(3)}`, `${name}: old median in ms`);
    t.match(row, `${(n * 1e3).toFixed(3)}`, `${name}: new median in ms`);
    t.match(row, new RegExp(`${escape(times(ratio))}\\s+${escape(percent(ratio))}`), `${name}: new/old and the change`);
    // The ceiling that bounds a case: copy for rows that read memory, else SGEMM for rows with FLOPs.
    const machine = bytes > 0 ? copy : flops > 0 ? sgemm : undefined;
    if (machine) t.match(row, new RegExp(`${escape(percent(ratio))}\\s+${escape(times(ratio * machine))}`), `${name}: machine-adjusted`);
    const mark = ratio > 1.1 ? "slower" : ratio < 0.9 ? "faster" : "";
    if (mark) t.ok(row.endsWith(mark), `${name}: marked ${mark}`);
    else t.notMatch(row, /slower|faster/, `${name}: within 10 %, not marked`);
  }
  // old 2.0 s, new 1.0 s: the ratio the reader looks for.
  t.match(line("sd15      attribute 1-token, softmax"), /0\.50×\s+-50\.0 %/);
  // The UNet step took twice as long on a machine with half the SGEMM rate: the machine, not the code.
  t.match(line("sd15      UNet step"), /2\.00×\s+\+100\.0 %\s+1\.00×\s+slower/);

  const evalRatio = after.eval.seconds_per_1000_items / before.eval.seconds_per_1000_items;
  t.match(line("eval      evaluate() per 1000 items, 512², 101 thresholds"), new RegExp(`${escape(times(evalRatio))}\\s+${escape(percent(evalRatio))}`));
  t.match(line("tiny-sd1  an added case"), "(added)");
  t.match(line("sd15      a removed case"), "(removed)");
  const ratios = [...shared.map(([, , o, n]) => n / o), evalRatio];
  const slower = ratios.filter((r) => r > 1.1).length;
  const faster = ratios.filter((r) => r < 0.9).length;
  t.match(stdout, `${ratios.length} timed cases compared: ${slower} slower, ${faster} faster by more than 10 %`);
  t.match(stdout, "1 added, 1 removed");
});

t.test("bad inputs: a stable code, and from the script one line and exit status 1", async (t) => {
  const good = result(100, 40, [["m", "c", 1, 0, 0]]);
  const cases = [
    ["a missing file", path.join(tmp, "missing.json"), "ERR_OVAM_NOT_FOUND", /does not exist/],
    ["a folder", tmp, "ERR_OVAM_INVALID_ARGUMENT", /is a folder/],
    ["not JSON", write("broken.json", '{"ceilings": '), "ERR_OVAM_INVALID_ARGUMENT", /is not JSON/],
    ["no ceilings", write("no-ceilings.json", { cases: [] }), "ERR_OVAM_INVALID_ARGUMENT", /not a benchmark result \(ceilings:/],
    ["a median that is text", write("text-median.json", { ...good, cases: [{ model: "m", case: "c", median_s: "1" }] }), "ERR_OVAM_INVALID_ARGUMENT", /cases\.0\.median_s/],
    ["a negative median", write("negative.json", { ...good, cases: [{ model: "m", case: "c", median_s: -1 }] }), "ERR_OVAM_INVALID_ARGUMENT", /cases\.0\.median_s/],
  ];
  for (const [name, file, code, message] of cases) await t.rejects(loadResult(file, "OLD.json"), { code, message }, name);
  // The script, on one case of each code in either place (a process each: kept to a few).
  for (const [[name, file, code, message], args, which] of [
    [cases[0], (file) => [oldFile, file], "NEW"],
    [cases[2], (file) => [file, newFile], "OLD"],
    [cases[4], (file) => [oldFile, file], "NEW"],
  ]) {
    const { status, stdout, stderr } = node([script, ...args(file)]);
    t.equal(status, 1, `${name}: exit status`);
    t.equal(stdout, "", `${name}: no table`);
    t.match(stderr, new RegExp(`^bench-compare: ${which}\\.json: .*${message.source}.*\\[${code}\\]\\n$`), `${name}: ${code} in one line`);
  }
  const usage = node([script, oldFile]);
  t.equal(usage.status, 2, "one file: a usage error");
  t.match(usage.stderr, /usage: node scripts\/bench-compare\.js OLD\.json NEW\.json/);
});

t.test("npm run bench -- --compare checks its file before the benchmark is built", async (t) => {
  const bench = path.join(root, "scripts", "bench.js");
  const missing = node([bench, "--quick", "--compare", path.join(tmp, "missing.json")]);
  t.equal(missing.status, 1);
  t.equal(missing.stdout, "", "no build output: nothing ran");
  t.match(missing.stderr, /^ovam bench: --compare: .*missing\.json does not exist.*\[ERR_OVAM_NOT_FOUND\]\n$/);
  const noValue = node([bench, "--compare"]);
  t.equal(noValue.status, 2);
  t.match(noValue.stderr, /--compare needs a value/);
});
