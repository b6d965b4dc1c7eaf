// Photographs through img2img: ovam.segment() and `ovam segment` on a JPEG and a PNG of odd size
// with an EXIF rotation (made here with sharp), maps and overlays at the photo's own size, and
// the bad inputs: not an image, a 100000×100000 header, strengths outside (0, 1], no step left.
import t from "tap";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";

import { root } from "./helpers/golden.mjs";

const require = createRequire(import.meta.url);
const ovam = require(path.join(root, "dist", "index.js"));
const sharp = require("sharp");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-segment-"));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

// Stored 333 wide × 500 high, top half red and bottom half green, tagged EXIF orientation 6
// (shown turned 90° clockwise): upright it is 500 × 333, green on the left, red on the right.
const [W, H] = [333, 500];
async function photo(format) {
  const raw = Buffer.alloc(W * H * 3);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) raw[(y * W + x) * 3 + (y < H / 2 ? 0 : 1)] = 255;
  const file = path.join(tmp, `photo.${format === "jpeg" ? "jpg" : format}`);
  fs.writeFileSync(file, await sharp(raw, { raw: { width: W, height: H, channels: 3 } }).withMetadata({ orientation: 6 })[format]().toBuffer());
  return file;
}

// A well-formed PNG whose header claims 100000 × 100000 pixels, with one byte of image data.
function hugePNG() {
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(zlib.crc32(body), 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(100000, 0);
  ihdr.writeUInt32BE(100000, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const file = path.join(tmp, "huge.png");
  fs.writeFileSync(file, Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk("IHDR", ihdr), chunk("IDAT", zlib.deflateSync(Buffer.alloc(1))), chunk("IEND", Buffer.alloc(0))]));
  return file;
}

const colourAt = (p, x, y) => Array.from(p.pixels.subarray((y * p.width + x) * 3, (y * p.width + x) * 3 + 3));
const quick = { steps: 4, strength: 0.5, seed: 3 };

t.test("segment() on a rotated JPEG: upright photo, maps and masks at its size", async (t) => {
  const sd = await ovam.load();
  const result = await ovam.segment(sd, await photo("jpeg"), ["car", "tree"], quick);
  t.same([result.photo.width, result.photo.height], [H, W], "EXIF orientation applied: 500 × 333");
  t.ok(colourAt(result.photo, 10, 160)[1] > 200 && colourAt(result.photo, 490, 160)[0] > 200, "green on the left, red on the right");
  t.same([result.image.width, result.image.height], [64, 40], "the model's input: longer side 64 (the tiny model's), multiples of 8");
  t.equal(result.image.settings.prompt, "car tree", "default prompt: the words");
  t.equal(result.image.settings.strength, 0.5);
  // int(4 × 0.5) = 2 of PNDM's 4 steps kept: its last 3 evaluations (the schedule repeats one timestep).
  t.equal(result.image.blocks[0].steps, 3, "the evaluations of the steps kept are stored");
  for (const [i, word] of result.words.entries()) {
    t.same([result.maps[i].width, result.maps[i].height, result.masks[i].width, result.masks[i].height], [H, W, H, W], `${word}: map and mask at the photo's size`);
    const direct = await ovam.attribute(result.image, word, { size: [W, H] });
    t.same(Array.from(result.maps[i].data), Array.from(direct.word(word).data), `${word}: the generation's map resized to the photo`);
  }
});

t.test("segment() keeps an in-memory picture and takes a prompt", async (t) => {
  const sd = await ovam.load();
  const data = new Uint8Array(24 * 16 * 3).fill(128);
  const result = await ovam.segment(sd, { data, width: 24, height: 16 }, ["car"], { ...quick, prompt: "a grey car", side: 24 });
  t.same([result.image.width, result.image.height], [24, 16]);
  t.equal(result.image.settings.prompt, "a grey car");
});

t.test("ovam segment on a rotated PNG writes overlays over the photo at its size and a sheet", async (t) => {
  const file = await photo("png");
  const out = path.join(tmp, "seg");
  const run = spawnSync(process.execPath, [path.join(root, "dist", "cli.js"), "segment", file, "car", "tree", "--strength", "0.3", "--steps", "10", "--seed", "2", "--json", "--out", out], { encoding: "utf8", timeout: 120_000 });
  t.equal(run.status, 0, run.stderr);
  const result = run.stdout.trim().split("\n").map((l) => JSON.parse(l)).find((r) => r.event === "result");
  t.same(result.size, [H, W], "the photo's upright size");
  t.equal(result.strength, 0.3);
  for (const name of ["car.overlay.png", "tree.overlay.png", "car.mask.png", "car.map.png"]) {
    const meta = await sharp(path.join(out, name)).metadata();
    t.same([meta.width, meta.height], [H, W], `${name} at the photo's size`);
  }
  const overlay = await sharp(path.join(out, "car.overlay.png")).raw().toBuffer();
  const left = Array.from(overlay.subarray((160 * H + 2) * 3, (160 * H + 2) * 3 + 3));
  t.ok(left[1] >= left[0], `the overlay is drawn over the photo (green side stays greenish: ${left})`);
  t.ok(fs.existsSync(path.join(out, "generation.safetensors")) && fs.existsSync(path.join(out, "sheet.png")), "generation file and sheet");
  const info = await ovam.readGenerationInfo(path.join(out, "generation.safetensors"));
  t.equal(info.settings.strength, 0.3, "the generation file records the strength");
});

t.test("bad inputs give typed errors", async (t) => {
  const sd = await ovam.load();
  const text = path.join(tmp, "notes.jpg");
  fs.writeFileSync(text, "not a picture at all");
  const cases = [
    ["not an image", () => ovam.segment(sd, text, ["car"], quick), ovam.ImageError, /not a picture/],
    ["a 100000×100000 header", () => ovam.segment(sd, hugePNG(), ["car"], quick), ovam.ImageError, /pixels/],
    ["strength 0", () => ovam.segment(sd, text, ["car"], { ...quick, strength: 0 }), ovam.InvalidOptionError, /strength/],
    ["strength 1.5", () => ovam.segment(sd, text, ["car"], { ...quick, strength: 1.5 }), ovam.InvalidOptionError, /\(0, 1\]/],
    ["no step after the strength", () => ovam.generate(sd, { prompt: "a car", image: { data: new Uint8Array(64 * 64 * 3), width: 64, height: 64 }, steps: 2, strength: 0.3 }), ovam.InvalidOptionError, /int\(steps × strength\) ≥ 1/],
    ["strength without an image", () => ovam.generate(sd, { prompt: "a car", strength: 0.5 }), ovam.InvalidOptionError, /without an image/],
    ["latents with an image", () => ovam.generate(sd, { prompt: "a car", image: { data: new Uint8Array(64 * 64 * 3), width: 64, height: 64 }, latents: { data: new Float32Array(4 * 8 * 8), shape: [1, 4, 8, 8] } }), ovam.InvalidOptionError, /latents/],
    ["a short RGB buffer", () => ovam.generate(sd, { prompt: "a car", image: { data: new Uint8Array(10), width: 64, height: 64 } }), ovam.InvalidOptionError, /width × height × 3/],
    ["a folder", () => ovam.segment(sd, tmp, ["car"], quick), ovam.InvalidArgumentError, /regular file/],
    ["no words", () => ovam.segment(sd, text, [], quick), ovam.InvalidOptionError, /words/],
  ];
  for (const [label, call, Class, pattern] of cases) {
    const error = await call().then(() => null, (e) => e);
    t.ok(error instanceof Class && pattern.test(error.message), `${label}: ${error?.name} [${error?.code}] ${error?.message}`);
  }
  const cli = spawnSync(process.execPath, [path.join(root, "dist", "cli.js"), "segment", hugePNG(), "car", "--out", path.join(tmp, "x")], { encoding: "utf8" });
  t.equal(cli.status, 1, `the CLI: one line and status 1: ${cli.stderr.trim()}`);
  t.match(cli.stderr, /ERR_OVAM_IMAGE/);
  t.notOk(fs.existsSync(path.join(tmp, "x")), "nothing written");
});
