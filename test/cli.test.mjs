// The `ovam` command line, run as a child process (node dist/cli.js) on the bundled tiny model:
// every command's files decoded by the test's own PNG/npy readers and checked against the
// library's own results, --json records, help, exit statuses and error output, Ctrl-C, and
// the PNG decoder and progress reporter the CLI is built on.
import t from "tap";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { spawn, spawnSync } from "node:child_process";
import { createRequire } from "node:module";

import { root } from "./helpers/golden.mjs";
import { writePNG } from "./helpers/png.mjs";

const require = createRequire(import.meta.url);
const ovam = require(path.join(root, "dist", "index.js"));
const { decodePNG } = require(path.join(root, "dist", "png.js"));
const { Reporter } = require(path.join(root, "dist", "progress.js"));
const cli = path.join(root, "dist", "cli.js");
const { version } = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-cli-"));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

function ovamCLI(args, options = {}) {
  const { status, stdout, stderr } = spawnSync(process.execPath, [cli, ...args], { cwd: tmp, encoding: "utf8", timeout: 120_000, ...options });
  return { status, stdout, stderr };
}

const records = (stdout) => stdout.trim().split("\n").map((line) => JSON.parse(line));
const resultOf = (stdout) => records(stdout).find((r) => r.event === "result");

// ---- the test's own readers and writers ---------------------------------------------------

function readPNG(file) {
  const png = fs.readFileSync(file);
  const chunks = [];
  for (let at = 8; at < png.length; at += 12 + png.readUInt32BE(at))
    chunks.push({ type: png.toString("ascii", at + 4, at + 8), data: png.subarray(at + 8, at + 8 + png.readUInt32BE(at)) });
  const ihdr = chunks[0].data;
  const [width, height, bitDepth, colorType] = [ihdr.readUInt32BE(0), ihdr.readUInt32BE(4), ihdr[8], ihdr[9]];
  const channels = { 0: 1, 2: 3 }[colorType];
  const bytes = bitDepth / 8;
  const raw = zlib.inflateSync(Buffer.concat(chunks.filter((c) => c.type === "IDAT").map((c) => c.data)));
  const stride = width * channels * bytes;
  const samples = [];
  for (let y = 0; y < height; y++) {
    if (raw[y * (stride + 1)] !== 0) throw new Error(`${file}: row ${y} is filtered; the test reader expects filter 0`);
    for (let i = 0; i < width * channels; i++) {
      const at = y * (stride + 1) + 1 + i * bytes;
      samples.push(bytes === 2 ? raw.readUInt16BE(at) : raw[at]);
    }
  }
  return { width, height, bitDepth, colorType, channels, samples };
}

function readNpy(file) {
  const bytes = fs.readFileSync(file);
  const headerLength = bytes.readUInt16LE(8);
  const header = bytes.toString("latin1", 10, 10 + headerLength);
  const shape = /'shape': \(([^)]*)\)/.exec(header)[1].split(",").filter((s) => s.trim()).map(Number);
  const start = 10 + headerLength;
  const data = Float32Array.from({ length: (bytes.length - start) / 4 }, (_, i) => bytes.readFloatLE(start + 4 * i));
  return { magic: bytes.toString("latin1", 0, 6), descr: /'descr': '([^']*)'/.exec(header)[1], aligned: start % 64 === 0, shape, data };
}

const minMax = (data) => {
  const [min, max] = [Math.min(...data), Math.max(...data)];
  return Array.from(data, (v) => (max > min ? (v - min) / (max - min) : 0));
};

// Every error printout: one or two lines, no stack trace.
function plainError(t, label, { stderr }) {
  const lines = stderr.trim().split("\n").filter((line) => !/^(Model:|Note:)/.test(line));
  t.ok(lines.length >= 1 && lines.length <= 2, `${label}: one or two error lines (${JSON.stringify(lines)})`);
  t.notMatch(stderr, /^\s+at /m, `${label}: no stack trace`);
}

// ---- the shared generation -------------------------------------------------------------------

const PROMPT = "a photograph of a car in a city street";
const genDir = path.join(tmp, "gen");
const generated = ovamCLI(["generate", PROMPT, "--steps", "2", "--seed", "7", "--out", genDir, "--json"]);
const generationFile = path.join(genDir, "generation.safetensors");
const sd = await ovam.load();
t.teardown(() => sd.dispose());

t.test("generate writes the image PNG and the generation, with --json progress and result", async (t) => {
  t.equal(generated.status, 0, `exit 0 (${generated.stderr})`);
  const all = records(generated.stdout);
  const progress = all.filter((r) => r.event === "progress");
  t.ok(progress.length >= 2, "a progress record per step");
  t.same(progress.map((r) => r.done), progress.map((_, i) => i + 1), "steps counted 1, 2, …");
  t.ok(progress.every((r) => r.task === "generate" && r.total === progress.length && r.elapsed_s >= 0), "task, total and elapsed on each");
  const result = resultOf(generated.stdout);
  t.equal(all.at(-1).event, "result", "the result record comes last");
  t.match(result, { command: "generate", prompt: PROMPT, seed: 7, steps: 2, width: 64, height: 64 });
  t.same(result.files.map((f) => f.path).sort(), [path.join(genDir, "generation.png"), generationFile].sort(), "files listed");

  const png = readPNG(path.join(genDir, "generation.png"));
  t.same([png.width, png.height, png.colorType], [64, 64, 2], "a 64×64 RGB PNG");
  const image = await ovam.loadGeneration(sd, generationFile);
  t.same(image.settings.prompt, PROMPT, "the generation holds its prompt");
  t.same(png.samples, [...image.pixels], "the PNG is the saved generation's image");
  t.ok(image.attentionBytes > 0, "with captured attention");
});

t.test("attribute and optimize use the model recorded in the generation unless --model says otherwise", async (t) => {
  const sd2 = path.join(root, "test", "fixtures", "tiny-sd2", "model");
  const dir = path.join(tmp, "sd2");
  const made = ovamCLI(["generate", "a car", "--model", sd2, "--steps", "2", "--seed", "1", "--out", dir]);
  t.equal(made.status, 0, `generate on tiny-sd2 (${made.stderr})`);
  const file = path.join(dir, "generation.safetensors");
  const recorded = ovamCLI(["attribute", file, "car", "--out", path.join(dir, "maps"), "--json"]);
  t.equal(recorded.status, 0, `attribute without --model (${recorded.stderr})`);
  const notes = records(recorded.stdout).filter((r) => r.event === "note").map((r) => r.message ?? r.text ?? JSON.stringify(r));
  t.ok(notes.some((n) => n.includes(sd2)), "it loads the tiny-sd2 model the file records");
  t.notOk(notes.some((n) => n.includes("RANDOM-WEIGHT smoke-test")), "not the bundled model");
  const wrong = ovamCLI(["attribute", file, "car", "--model", path.join(root, "models", "tiny-sd1"), "--out", path.join(dir, "wrong")]);
  t.not(wrong.status, 0, "--model wins: the bundled sd1 model cannot read an sd2 generation");
  plainError(t, "an sd2 generation read with the sd1 model", wrong);
});

t.test("generate in plain mode reports steps on stderr, the summary on stdout", async (t) => {
  const run = ovamCLI(["generate", "a red bus", "--steps", "2", "--seed", "1", "--size", "64x64", "--name", "../bus", "--out", path.join(tmp, "plain")]);
  t.equal(run.status, 0, "exit 0");
  t.match(run.stderr, /generate: step 1\/\d+ .*elapsed, ~.* left/, "a line per step with elapsed and remaining time");
  t.match(run.stderr, /RANDOM-WEIGHT/, "says the bundled model has random weights");
  t.match(run.stdout, /seed 1/, "summary with the seed");
  t.ok(fs.existsSync(path.join(tmp, "plain", "bus.png")), "--name made safe: ../bus → bus.png inside --out");
});

const attrDir = path.join(tmp, "attr");
const words = ["car", "street", "tree"];
const attributed = ovamCLI(["attribute", generationFile, ...words, "--threshold", "0.4", "--out", attrDir, "--json"]);

t.test("attribute writes overlay, raw map (PNG and npy) and mask per word, equal to the library's maps", async (t) => {
  t.equal(attributed.status, 0, `exit 0 (${attributed.stderr})`);
  const image = await ovam.loadGeneration(sd, generationFile);
  const picture = readPNG(path.join(genDir, "generation.png")).samples;
  for (const word of words) {
    const expected = (await ovam.attribute(image, word)).word(word).data;
    const npy = readNpy(path.join(attrDir, `${word}.map.npy`));
    t.same([npy.magic, npy.descr, npy.aligned, npy.shape], ["\x93NUMPY", "<f4", true, [64, 64]], `${word}: npy header`);
    t.same([...npy.data], [...expected], `${word}: npy values are the library's word map`);

    const normalised = minMax(npy.data);
    const grey = readPNG(path.join(attrDir, `${word}.map.png`));
    t.same([grey.width, grey.height, grey.bitDepth, grey.colorType], [64, 64, 16, 0], `${word}: 16-bit grey map`);
    t.ok(grey.samples.every((v, i) => Math.abs(v - normalised[i] * 65535) <= 1), `${word}: grey levels are the normalised map`);

    const mask = readPNG(path.join(attrDir, `${word}.mask.png`));
    t.same([mask.width, mask.height], [64, 64], `${word}: mask size`);
    t.same(mask.samples, normalised.map((v) => (v > 0.4 ? 255 : 0)), `${word}: mask is binary, white where the normalised map > --threshold`);
    t.ok(mask.samples.includes(255) && mask.samples.includes(0), `${word}: mask has object and background`);

    const heat = readPNG(path.join(attrDir, `${word}.overlay.png`));
    t.same([heat.width, heat.height, heat.colorType], [64, 64, 2], `${word}: RGB overlay of the image's size`);
    const pixel = (samples, i) => samples.slice(3 * i, 3 * i + 3);
    const low = normalised.indexOf(0);
    const high = normalised.indexOf(1);
    t.same(pixel(heat.samples, low), pixel(picture, low), `${word}: overlay is the image where the map is lowest`);
    const change = pixel(heat.samples, high).reduce((sum, v, c) => sum + Math.abs(v - pixel(picture, high)[c]), 0);
    t.ok(change > 30, `${word}: overlay differs from the image where the map is highest (by ${change})`);
  }
  const result = resultOf(attributed.stdout);
  t.same(result.subjects, words, "result names the words");
  t.equal(result.files.length, words.length * 4 + 1, "four files per word and a sheet");
});

t.test("the sheet shows the image enlarged and one labelled tile per word", async (t) => {
  const result = resultOf(attributed.stdout);
  const sheet = readPNG(path.join(attrDir, "sheet.png"));
  t.same([sheet.width, sheet.height], [result.sheet.width, result.sheet.height], "size as reported");
  const one = ovamCLI(["attribute", generationFile, "car", "--out", path.join(tmp, "attr-one"), "--json"]);
  const single = readPNG(path.join(tmp, "attr-one", "sheet.png"));
  t.equal(single.height, sheet.height, "same height whatever the word count");
  const stride = (sheet.width - single.width) / (words.length - 1);
  t.ok(Number.isInteger(stride) && stride >= 64 * 2, `each word adds a tile (${stride} px) enlarged at least ×2`);
  t.equal(one.status, 0, "one-word attribute exits 0");

  // Find the image, enlarged ×k (a tile and a margin narrower than a tile per word), in the first tile.
  const picture = readPNG(path.join(genDir, "generation.png"));
  const k = Math.floor(stride / 64);
  const at = (img, x, y) => img.samples.slice(3 * (y * img.width + x), 3 * (y * img.width + x) + 3).join();
  let found;
  for (let y = 0; y + 64 * k <= sheet.height && !found; y++)
    for (let x = 0; x < stride && !found; x++)
      if (at(sheet, x, y) === at(picture, 0, 0) && at(sheet, x + k * 63, y + k * 63) === at(picture, 63, 63)) found = { x, y };
  t.ok(found, `the image appears enlarged ×${k} at ${JSON.stringify(found)}`);
  if (found) {
    let same = true;
    for (let y = 0; y < 64 * k && same; y++) for (let x = 0; x < 64 * k && same; x++) same = at(sheet, found.x + x, found.y + y) === at(picture, Math.floor(x / k), Math.floor(y / k));
    t.ok(same, "every pixel of the enlarged image matches (nearest)");
    const label = [];
    for (let y = 0; y < found.y; y++) for (let x = found.x; x < found.x + 64 * k; x++) label.push(at(sheet, x, y));
    t.ok(new Set(label).size === 2, "a two-colour label (text on background) above the tile");
  }
});

t.test("words that would escape --out become safe, distinct file names inside it", async (t) => {
  const dir = path.join(tmp, "escape", "out");
  const run = ovamCLI(["attribute", generationFile, "../x", "a/b", "A/B", "/etc/passwd", "été", "--out", dir, "--json"]);
  t.equal(run.status, 0, `exit 0 (${run.stderr})`);
  const files = resultOf(run.stdout).files.map((f) => f.path);
  t.ok(files.every((f) => path.dirname(f) === dir), "every file directly inside --out");
  t.same(fs.readdirSync(path.dirname(dir)), ["out"], "nothing written beside --out");
  const stems = [...new Set(files.map((f) => path.basename(f).split(".")[0]))];
  t.same(stems, ["x", "a-b", "a-b-2", "etc-passwd", "ete", "sheet"], "sanitised to [a-z0-9_-], collisions numbered");
  t.same(fs.readdirSync(dir).sort(), files.map((f) => path.basename(f)).sort(), "exactly the listed files exist");
});

// A 64×64 mask: a rectangle over the lower middle.
const rectangle = Uint8Array.from({ length: 64 * 64 }, (_, i) => (Math.floor(i / 64) >= 32 && Math.floor(i / 64) < 56 && i % 64 >= 16 && i % 64 < 48 ? 1 : 0));

t.test("optimize reads a mask PNG, reports the loss per epoch and saves a token attribute can use", async (t) => {
  // RGBA, every filter type, the object opaque white; a transparent white pixel counts as background.
  const samples = [];
  rectangle.forEach((v) => samples.push(v ? 255 : 0, v ? 250 : 10, v ? 240 : 20, 255));
  samples.splice(0, 4, 255, 255, 255, 0);
  const maskFile = path.join(tmp, "mask.png");
  fs.writeFileSync(maskFile, writePNG(64, 64, 4, samples, { filters: [0, 1, 2, 3, 4] }));
  const tokenFile = path.join(tmp, "tok", "car.safetensors");
  const run = ovamCLI(["optimize", generationFile, "--mask", maskFile, "--text", "car", "--epochs", "5", "--out", tokenFile, "--json"]);
  t.equal(run.status, 0, `exit 0 (${run.stderr})`);
  const progress = records(run.stdout).filter((r) => r.event === "progress");
  t.same(progress.map((r) => [r.task, r.unit, r.done, r.total]), [1, 2, 3, 4, 5].map((n) => ["optimize", "epoch", n, 5]), "a record per epoch");
  const result = resultOf(run.stdout);
  t.same(progress.map((r) => r.loss), result.losses, "each epoch's loss as it went");

  const image = await ovam.loadGeneration(sd, generationFile);
  const reference = await ovam.optimizeToken(image, { text: "car", target: { data: rectangle, width: 64, height: 64 }, epochs: 5 });
  t.same(result.losses, reference.losses, "the decoded mask is the rectangle: the library, given it, has the same losses");
  const token = await ovam.loadToken(tokenFile);
  t.same([token.text, token.losses], ["car", reference.losses], "token file saved");

  // Same aspect ratio, twice the size: resized to the image.
  const big = Uint8Array.from({ length: 128 * 128 }, (_, i) => rectangle[Math.floor(i / 256) * 64 + Math.floor((i % 128) / 2)] * 255);
  fs.writeFileSync(path.join(tmp, "big.png"), writePNG(128, 128, 1, big, { filters: [4, 3, 2, 1, 0] }));
  const resized = ovamCLI(["optimize", generationFile, "--mask", "big.png", "--text", "car", "--epochs", "5", "--out", "tok/big.safetensors"]);
  t.equal(resized.status, 0, "a 128×128 mask is resized");
  t.same((await ovam.loadToken(path.join(tmp, "tok", "big.safetensors"))).losses, reference.losses, "to the same target");
  t.match(resized.stderr, /optimize: epoch 1\/5\s+loss \d/, "plain mode prints the loss of each epoch");

  const withToken = ovamCLI(["attribute", generationFile, "car", "--token", tokenFile, "--out", path.join(tmp, "attr-token"), "--json"]);
  t.equal(withToken.status, 0, `attribute --token exits 0 (${withToken.stderr})`);
  const names = resultOf(withToken.stdout).files.map((f) => path.basename(f.path));
  t.ok(["token-car.overlay.png", "token-car.map.png", "token-car.map.npy", "token-car.mask.png", "car.map.npy", "sheet.png"].every((n) => names.includes(n)), "token files beside the word's");
  const expected = (await ovam.attribute(image, token)).word("car").data;
  t.same([...readNpy(path.join(tmp, "attr-token", "token-car.map.npy")).data], [...expected], "the token's map is the library's");
});

t.test("demo writes everything into one folder and lists it", async (t) => {
  const run = ovamCLI(["demo", "--steps", "2", "--epochs", "3"]);
  t.equal(run.status, 0, `exit 0 (${run.stderr})`);
  const dir = path.join(tmp, "ovam-demo");
  t.match(run.stdout, /RANDOM-WEIGHT/, "says the model is the random-weight smoke-test model");
  t.match(run.stdout, /--model \/path\/to\/stable-diffusion-v1-5/, "and how to use a real one");
  const written = fs.readdirSync(dir).sort();
  for (const name of written) t.match(run.stdout, `ovam-demo/${name} `, `summary lists ${name}`);
  for (const word of ["car", "street", "tree", "token-car"])
    t.ok(["overlay.png", "map.png", "map.npy", "mask.png"].every((suffix) => written.includes(`${word}.${suffix}`)), `${word}: all four files`);
  t.ok(["generation.png", "generation.safetensors", "sheet.png", "car.token.safetensors", "car-target.png"].every((n) => written.includes(n)), "image, generation, sheet, token, target");
  t.equal(readPNG(path.join(dir, "car-target.png")).samples.filter((v) => v === 255).length > 0, true, "target mask has an object");

  const json = ovamCLI(["demo", "--steps", "2", "--epochs", "3", "--out", "demo-json", "--json"]);
  const result = resultOf(json.stdout);
  t.match(result, { command: "demo", randomWeights: true, words: ["car", "street", "tree"] });
  t.equal(result.files.length, written.length, "the same files");
  t.ok(result.files.every((f) => fs.existsSync(f.path) && f.description.length > 0), "each listed with a description");
});

t.test("--help for ovam and every command, --version", async (t) => {
  for (const args of [["--help"], ["-h"], ["help"]]) {
    const run = ovamCLI(args);
    t.equal(run.status, 0, `${args}: exit 0`);
    t.match(run.stdout, /Usage: ovam <command>/, `${args}: usage`);
  }
  for (const command of ["generate", "attribute", "optimize", "eval", "demo"]) {
    // Help wins over other mistakes on the line.
    const run = ovamCLI([command, "--bogus", "--help"]);
    t.equal(run.status, 0, `${command} --help: exit 0`);
    t.match(run.stdout, `Usage: ovam ${command}`, `${command}: usage`);
    t.match(run.stdout, /Examples:\n  ovam /, `${command}: examples`);
    t.equal(ovamCLI([command, "-h"]).stdout, run.stdout, `${command} -h is --help`);
    t.equal(ovamCLI(["help", command]).stdout, run.stdout, `ovam help ${command}`);
  }
  t.equal(ovamCLI(["--version"]).stdout.trim(), version, "--version prints package.json's version");
  const bare = ovamCLI([]);
  t.equal(bare.status, 2, "no command: usage error");
  t.match(bare.stderr, /Usage: ovam <command>/, "with the usage on stderr");
});

t.test("errors: exit status, one or two lines, no stack trace", async (t) => {
  const cases = [
    ["missing prompt", ["generate", "--out", "x"], 2, /missing prompt/],
    ["missing --out", ["generate", "a cat"], 2, /missing --out/],
    ["unknown flag", ["generate", "a cat", "--out", "x", "--colour", "red"], 2, /Unknown option '--colour'/],
    ["unknown command", ["paint"], 2, /unknown command "paint"/],
    ["bad --size", ["generate", "a cat", "--out", "x", "--size", "64by64"], 2, /--size expects WIDTHxHEIGHT/],
    ["fractional --steps", ["generate", "a cat", "--out", "x", "--steps", "2.5"], 2, /--steps expects an integer/],
    ["bad --mode", ["attribute", generationFile, "car", "--mode", "max", "--out", "x"], 2, /--mode expects one of softmax, linear/],
    ["no words", ["attribute", generationFile, "--out", "x"], 2, /missing words/],
    ["masks ≠ generations", ["optimize", generationFile, generationFile, "--mask", "m.png", "--text", "car", "--out", "t"], 2, /2 generation file\(s\) but 1 --mask/],
    ["size not a multiple of 8", ["generate", "a cat", "--out", "x", "--steps", "1", "--size", "60x60"], 1, /"width" got 60.*ERR_OVAM_INVALID_OPTION/],
    ["missing generation file", ["attribute", path.join(tmp, "nope.safetensors"), "car", "--out", "x"], 1, /nope\.safetensors.*ERR_OVAM_NOT_FOUND/],
    ["not a generation file", ["attribute", path.join(genDir, "generation.png"), "car", "--out", "x"], 1, /ERR_OVAM_SAFETENSORS/],
  ];
  for (const [label, args, status, message] of cases) {
    const run = ovamCLI(args);
    t.equal(run.status, status, `${label}: exit ${status}`);
    t.match(run.stderr, message, `${label}: ${run.stderr.trim().split("\n").at(-1)}`);
    plainError(t, label, run);
  }
  t.notOk(fs.existsSync(path.join(tmp, "x")), "nothing written by failed commands");

  fs.writeFileSync(path.join(tmp, "wide.png"), writePNG(40, 20, 1, new Array(800).fill(255)));
  const wide = ovamCLI(["optimize", generationFile, "--mask", "wide.png", "--text", "car", "--out", "t.safetensors"]);
  t.equal(wide.status, 1, "a mask of another aspect ratio: exit 1");
  t.match(wide.stderr, /wide\.png: the mask is 40×20 but the image is 64×64.*ERR_OVAM_INVALID_ARGUMENT/, "names both sizes");
  plainError(t, "bad mask size", wide);

  fs.writeFileSync(path.join(tmp, "deep.png"), writePNG(64, 64, 2, new Array(64 * 64 * 2).fill(0), { bitDepth: 16, colorType: 0 }));
  const deep = ovamCLI(["optimize", generationFile, "--mask", "deep.png", "--text", "car", "--out", "t.safetensors"]);
  t.match([deep.status, deep.stderr], [1, /bit depth 16 is not supported/], "a 16-bit mask: a clear error");

  const verbose = ovamCLI(["attribute", path.join(tmp, "nope.safetensors"), "car", "--out", "x", "--verbose"]);
  t.match([verbose.status, verbose.stderr], [1, /^\s+at /m], "--verbose adds the stack trace");

  const json = ovamCLI(["attribute", path.join(tmp, "nope.safetensors"), "car", "--out", "x", "--json"]);
  t.match(records(json.stdout).at(-1), { event: "error", code: "ERR_OVAM_NOT_FOUND", status: 1 }, "--json ends with an error record");
});

t.test("Ctrl-C aborts a running generation and exits 130", async (t) => {
  const child = spawn(process.execPath, [cli, "generate", "a long one", "--steps", "900", "--out", "int", "--json"], { cwd: tmp });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (data) => (stderr += data));
  const exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
  const started = Date.now();
  await new Promise((resolve) => {
    child.stdout.on("data", (data) => {
      stdout += data;
      if (stdout.includes('"event":"progress"')) resolve();
    });
    exited.then(resolve);
  });
  child.kill("SIGINT");
  const status = await exited;
  t.equal(status, 130, "exit 130");
  t.ok(Date.now() - started < 20_000, "stopped long before 900 steps");
  t.match(stderr, /ovam generate: interrupted/, "says it was interrupted");
  t.match(records(stdout).at(-1), { event: "error", code: "ERR_OVAM_ABORTED", status: 130 }, "error record");
  t.notOk(fs.existsSync(path.join(tmp, "int", "generation.png")), "no image written");
});

t.test("decodePNG: every filter and 8-bit colour type; clear errors otherwise", async (t) => {
  const [width, height] = [7, 6];
  for (const channels of [1, 2, 3, 4]) {
    const samples = Array.from({ length: width * height * channels }, (_, i) => (i * 53 + 17) % 256);
    const decoded = await decodePNG(writePNG(width, height, channels, samples, { filters: [0, 1, 2, 3, 4, 4] }));
    t.same([decoded.width, decoded.height, decoded.channels, [...decoded.data]], [width, height, channels, samples], `${channels} channel(s), filters 0–4`);
  }
  const fails = async (label, bytes, message) => {
    const error = await decodePNG(bytes, "m.png").catch((e) => e);
    t.ok(error instanceof ovam.InvalidArgumentError, `${label}: InvalidArgumentError`);
    t.match(error.message, message, `${label}: ${error.message}`);
  };
  const grey = new Array(16).fill(9);
  await fails("not a PNG", Buffer.from("GIF89a…"), /m\.png: not a PNG file/);
  await fails("palette", writePNG(4, 4, 1, grey, { colorType: 3 }), /colour type 3 \(palette\) is not supported/);
  await fails("16-bit", writePNG(4, 4, 2, [...grey, ...grey], { bitDepth: 16, colorType: 0 }), /bit depth 16/);
  await fails("interlaced", writePNG(4, 4, 1, grey, { interlace: 1 }), /interlaced/);
  const corrupt = writePNG(4, 4, 1, grey);
  corrupt[40] ^= 0xff;
  await fails("corrupt", corrupt, /CRC mismatch|corrupt/);
  await fails("truncated", writePNG(4, 4, 1, grey).subarray(0, 30), /truncated/);
});

t.test("the progress reporter: a bar on a terminal, lines otherwise, JSON records", async (t) => {
  const sink = (isTTY) => ({ isTTY, columns: 100, text: "", write(s) { this.text += s; } });
  let now = 0;
  const make = (json, isTTY) => {
    const [out, err] = [sink(false), sink(isTTY)];
    return { out, err, reporter: new Reporter({ json, out, err, now: () => now }) };
  };
  const drive = (reporter) => {
    now = 0;
    const task = reporter.start("optimize", "epoch", 4);
    now = 2;
    task.update(1, { loss: 0.5 });
    now = 4;
    task.update(2);
    task.end();
  };
  const tty = make(false, true);
  drive(tty.reporter);
  t.equal(tty.reporter.mode, "tty");
  t.match(tty.err.text, /\roptimize █{12}░{12} epoch 2\/4  4\.0s elapsed, ~4\.0s left/, "a half-full bar with elapsed and remaining time");
  t.match(tty.err.text, /optimize: epoch 1\/4  loss 0\.50000\n/, "the loss on a line of its own");
  t.match(tty.err.text, /\r\x1b\[Koptimize: 2\/4 epochs in 4\.0s\n$/, "the bar replaced by a final line");

  const plain = make(false, false);
  drive(plain.reporter);
  t.same(plain.err.text.split("\n").filter(Boolean), [
    "optimize: epoch 1/4  loss 0.50000  2.0s elapsed, ~6.0s left",
    "optimize: epoch 2/4  4.0s elapsed, ~4.0s left",
    "optimize: 2/4 epochs in 4.0s",
  ], "plain lines, no control characters");

  const json = make(true, true);
  drive(json.reporter);
  t.equal(json.err.text, "", "nothing on stderr");
  t.same(records(json.out.text), [
    { event: "progress", task: "optimize", unit: "epoch", done: 1, total: 4, elapsed_s: 2, remaining_s: 6, loss: 0.5 },
    { event: "progress", task: "optimize", unit: "epoch", done: 2, total: 4, elapsed_s: 4, remaining_s: 4 },
    { event: "done", task: "optimize", unit: "epoch", done: 2, total: 4, elapsed_s: 4 },
  ]);
});

t.test("dist/cli.js is executable and the package bin points at it", async (t) => {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
  t.equal(path.resolve(root, pkg.bin.ovam), cli, 'package.json "bin".ovam');
  t.ok(fs.statSync(cli).mode & 0o111, "executable");
  t.match(fs.readFileSync(cli, "utf8"), /^#!\/usr\/bin\/env node\n/, "with a node shebang");
  const run = spawnSync(cli, ["--version"], { encoding: "utf8" });
  t.equal(run.stdout.trim(), version, "runs directly");
});
