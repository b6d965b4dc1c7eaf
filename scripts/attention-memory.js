#!/usr/bin/env node
// What OVAM's capture holds per denoising step, computed from a release's UNet architecture (the
// module tree the core builds on the meta device, test/fixtures/architectures): for every attn2,
// to_q's width (heads × head_dim) × the block's latent cells (the latent halves per down level)
// × bytes per value, for one guidance branch. Usage: node scripts/attention-memory.js [name WxH]…
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { components } = require("node-gyp-build")(path.join(__dirname, ".."));

const runs = process.argv.length > 2 ? process.argv.slice(2) : ["sd15", "512x512", "sd21", "768x768", "sdxl", "1024x1024"];
const MiB = 2 ** 20;

async function perStep(name, width, height) {
  const arch = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "test", "fixtures", "architectures", `${name}.json`), "utf8"));
  const levels = arch.unet_config.block_out_channels.length;
  const tree = await components.architecture("unet", JSON.stringify(arch.unet_config));
  let values = 0, mid = 0, blocks = 0;
  for (const [tensor, shape] of tree) {
    const m = /^(down_blocks|up_blocks|mid_block)\.(\d+)?.*\.attn2\.to_q\.weight$/.exec(tensor);
    if (!m) continue;
    // Latent side halves at each down level; up block i mirrors down block levels-1-i; the mid block is the deepest.
    const level = m[1] === "down_blocks" ? +m[2] : m[1] === "up_blocks" ? levels - 1 - +m[2] : levels - 1;
    const cells = Math.ceil(height / 8 / 2 ** level) * Math.ceil(width / 8 / 2 ** level);
    if (m[1] === "mid_block") mid += shape[0] * cells;
    else (values += shape[0] * cells), blocks++;
  }
  return { blocks, values, mid };
}

(async () => {
  console.log("model  size       attn2 blocks  float32 MiB/step  float16 MiB/step  +mid block (f32)  50 steps f32 / f16 GiB");
  for (let i = 0; i < runs.length; i += 2) {
    const [w, h] = runs[i + 1].split("x").map(Number);
    const { blocks, values, mid } = await perStep(runs[i], w, h);
    const f32 = (values * 4) / MiB, f16 = (values * 2) / MiB;
    console.log(
      `${runs[i].padEnd(6)} ${runs[i + 1].padEnd(10)} ${String(blocks).padStart(12)}  ${f32.toFixed(1).padStart(16)}  ${f16.toFixed(1).padStart(16)}  ${((mid * 4) / MiB).toFixed(1).padStart(16)}  ${((50 * f32) / 1024).toFixed(2).padStart(10)} / ${((50 * f16) / 1024).toFixed(2)}`,
    );
  }
})();
