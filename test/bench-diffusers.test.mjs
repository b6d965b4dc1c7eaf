// `npm run bench -- --compare-diffusers PYTHON` (issue 16): diffusers' rows joined to a native
// result (each beside the native row of its case and dtype, the ratio and the peaks computed from
// both, the rows kept in the JSON under their own model names), and a Python that cannot run the
// comparison refused (a usage error, exit status 2) before anything is built. The Python side itself needs a
// Python with diffusers, which CI does not have; README says how it was run.
import t from "tap";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { createRequire } from "node:module";

import { root } from "./helpers/golden.mjs";

const { joinDiffusers } = createRequire(import.meta.url)(path.join(root, "scripts", "bench-diffusers.js"));
const GIB = 2 ** 30;

const nativeRow = (model, name, seconds, extra = {}) => ({ model, case: name, median_s: seconds, flops: 0, gflops_per_s: 0, bytes_read: 0, note: "", ...extra });
const measured = (rows) => ({ diffusers: "0.20.2", transformers: "4.33.0", torch: "1.13.1", threads: 2, allocator: "glibc malloc", rows });

t.test("each diffusers row beside the native row of its case and dtype", async (t) => {
  const native = {
    threads: 2,
    cases: [
      nativeRow("sd15", "text encoding (77 tokens)", 0.3),
      nativeRow("sd15", "UNet step (CFG batch 2), capture off", 9),
      nativeRow("sd15-f32", "UNet step (CFG batch 2) 256px", 4),
      nativeRow("sd15-bf16", "UNet step (CFG batch 2) 512px", 3),
      nativeRow("sd15-f32", "generate 1 step + decode 512px", 20, { peak_resident_bytes: 5 * GIB }),
      nativeRow("sd15-f32", "attribute 1-token, softmax, first (text encoder + keys)", 0.1),
    ],
  };
  const lines = joinDiffusers(
    native,
    measured([
      { case: "text encoding (77 tokens)", dtype: "float32", seconds: 0.15, note: "n1" },
      { case: "UNet step (CFG batch 2) 256px", dtype: "float32", seconds: 2, note: "n2" },
      { case: "UNet step (CFG batch 2) 512px", dtype: "bfloat16", seconds: 6, note: "n3" },
      { case: "generate 1 step + decode 512px", dtype: "float32", seconds: 25, note: "n4", peak_gib: 6.5, before_gib: 4 },
      { case: "generate 1 step + decode 768px", dtype: "float32", seconds: 90, note: "n5", peak_gib: 16 },
      { case: "attribute 1-token, softmax, first (text encoder + keys)", dtype: "float32", seconds: 2, note: "n6", by: "OVAM" },
    ]),
  );
  t.match(lines[0], /diffusers 0\.20\.2 \(transformers 4\.33\.0, torch 1\.13\.1, glibc malloc\)/);
  const body = lines.slice(2);
  t.equal(body.length, 6, "a line per diffusers row");
  t.match(body[0], /text encoding \(77 tokens\)\s+float32\s+300 ms \(sd15\)\s+150 ms\s+2\.00x$/, "the 256² model's row where no full-size one exists");
  t.match(body[1], /4000 ms \(sd15-f32\)\s+2000 ms\s+2\.00x$/, "the full-size row before the 256² model's capture-off step (9 s)");
  t.match(body[2], /bfloat16\s+3000 ms \(sd15-bf16\)\s+6000 ms\s+0\.50x$/, "bfloat16 against bfloat16");
  t.match(body[3], /20000 ms \(sd15-f32\)\s+25000 ms\s+0\.80x\s+5\.00 \/ 6\.50$/, "both peaks");
  t.match(body[4], /no native row\s+90000 ms\s+-\s+- \/ 16\.00$/, "no native row: no ratio");
  t.match(body[5], /^attribute 1-token, softmax, first \(text encoder \+ keys\) \(OVAM\) float32\s+100 ms \(sd15-f32\)\s+2000 ms\s+0\.05x$/, "OVAM's row names it");

  const added = native.cases.slice(6);
  t.same(
    added.map((c) => [c.model, c.case, c.median_s, c.note]),
    [
      ["diffusers-float32", "text encoding (77 tokens)", 0.15, "n1"],
      ["diffusers-float32", "UNet step (CFG batch 2) 256px", 2, "n2"],
      ["diffusers-bfloat16", "UNet step (CFG batch 2) 512px", 6, "n3"],
      ["diffusers-float32", "generate 1 step + decode 512px", 25, "n4"],
      ["diffusers-float32", "generate 1 step + decode 768px", 90, "n5"],
      ["diffusers-float32", "attribute 1-token, softmax, first (text encoder + keys)", 2, "OVAM: n6"],
    ],
  );
  t.equal(added[3].peak_resident_bytes, 6.5 * GIB);
  t.notOk("peak_resident_bytes" in added[0], "no peak where none was measured");
  t.same(native.diffusers, { diffusers: "0.20.2", transformers: "4.33.0", torch: "1.13.1", allocator: "glibc malloc" });
});

t.test("a Python that cannot run the comparison is refused before the benchmark is built", async (t) => {
  const bench = path.join(root, "scripts", "bench.js");
  const node = (args) => spawnSync(process.execPath, [bench, ...args], { cwd: root, encoding: "utf8", timeout: 30_000 });
  const missing = node(["--quick", "--compare-diffusers", "/nonexistent/python"]);
  t.equal(missing.status, 2);
  t.equal(missing.stdout, "", "no build output: nothing ran");
  t.match(missing.stderr, /^ovam bench: --compare-diffusers: cannot run \/nonexistent\/python \(ENOENT\); accepted: a Python with torch, diffusers and transformers \(e\.g\. \/opt\/diffusers-ref\/bin\/python\)\n$/);
  // This machine's python3 has neither torch nor diffusers.
  const plain = node(["--quick", "--compare-diffusers", "python3"]);
  t.equal(plain.status, 2);
  t.equal(plain.stdout, "");
  t.match(plain.stderr, /--compare-diffusers: python3 cannot import torch, diffusers and transformers \(ModuleNotFoundError: No module named '\w+'\)/);
  const noValue = node(["--compare-diffusers"]);
  t.equal(noValue.status, 2);
  t.match(noValue.stderr, /--compare-diffusers needs a value/);
});
