// The same seed gives the same bits whichever pool thread runs the job. libtorch's OpenMP thread
// count is per thread, and a pool thread that converted tensors before any load() kept a count of
// its own: a generation landing there differed from the same seed elsewhere by 5e-5 (relative L2).
// Each case runs in a fresh process, so that its pool threads start clean.
import t from "tap";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import { modelDir, root } from "./helpers/golden.mjs";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-threads-"));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

// Prints the SHA-256 of each of three generations' latents, after (optionally) converting the
// model's weights on every pool thread first.
const child = `
const path = require("node:path");
const { createHash } = require("node:crypto");
const ovam = require(${JSON.stringify(path.join(root, "dist", "index.js"))});
const native = require(${JSON.stringify(path.join(root, "build", "Release", "ovam.node"))});
const model = ${JSON.stringify(modelDir("sd1"))};
(async () => {
  if (process.argv[1] === "convert-first") {
    const files = ["text_encoder/model.safetensors", "unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"];
    await Promise.all([...files, ...files].map(async (f) => {
      const { tensors, metadata } = await native.loadTensors(path.join(model, f));
      await native.encodeTensors(tensors, metadata, "float16");
    }));
  }
  const sd = await ovam.load({ dtype: "float32" });
  const hashes = [];
  for (let i = 0; i < 3; i++) {
    const image = await ovam.generate(sd, { prompt: "a car next to a tree", steps: 3, seed: 7 });
    hashes.push(createHash("sha256").update(image.latents.data).digest("hex"));
    image.dispose();
  }
  console.log(JSON.stringify(hashes));
  sd.dispose();
})();
`;
const run = (mode) => JSON.parse(execFileSync(process.execPath, ["-e", child, mode], { encoding: "utf8" }));

t.test("generations are bit-identical whichever pool thread runs them", async (t) => {
  for (const f of ["text_encoder/model.safetensors", "unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"])
    t.ok(fs.existsSync(path.join(modelDir("sd1"), f)), `${f} is there to convert`);
  const clean = run("clean");
  const converted = run("convert-first");
  t.equal(new Set(clean).size, 1, "a fresh process: three generations, one result");
  t.same(converted, clean, "after tensor work on the pool threads before load(): the same bits, every time");
});
