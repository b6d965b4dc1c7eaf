// Token banks on the bundled tiny model: optimizeTokens → saveTokens → loadTokens round trip,
// "FILE#NAME" references, resuming from `initial`, and `ovam optimize --truth` writing a bank that
// `ovam attribute --token bank#name` reads.
import t from "tap";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";

import { root } from "./helpers/golden.mjs";

const require = createRequire(import.meta.url);
const ovam = require(path.join(root, "dist", "index.js"));
const cli = path.join(root, "dist", "cli.js");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-bank-"));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

const sd = await ovam.load();
t.teardown(() => sd.dispose());
const images = await Promise.all([1, 2, 3].map((seed) => ovam.generate(sd, { prompt: "a car and a dog in a street", seed, steps: 2 })));
const disc = (image, cx) => ({
  data: Uint8Array.from({ length: image.width * image.height }, (_, i) => ((i % image.width) / image.width - cx) ** 2 + (Math.floor(i / image.width) / image.height - 0.5) ** 2 < 0.04 ? 1 : 0),
  width: image.width,
  height: image.height,
});
const examples = [
  { image: images[0], masks: { car: disc(images[0], 0.3), dog: disc(images[0], 0.7) } },
  { image: images[1], masks: { car: disc(images[1], 0.3) } },
  { image: images[2], masks: { dog: disc(images[2], 0.6) } },
];
const same = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);

t.test("optimizeTokens: a token per class over the images that have it", async (t) => {
  const seen = [];
  const bank = await ovam.optimizeTokens(examples, { epochs: 3, onEpoch: (name, epoch) => seen.push(`${name}:${epoch}`) });
  t.same([...bank.keys()], ["car", "dog"]);
  t.same(seen, ["car:0", "car:1", "car:2", "dog:0", "dog:1", "dog:2"]);
  // The car token equals optimizeToken over the two images with a car mask (losses summed).
  const car = await ovam.optimizeToken([images[0], images[1]], { text: "car", targets: [examples[0].masks.car, examples[1].masks.car], epochs: 3 });
  t.ok(same(bank.get("car").embedding.data, car.embedding.data), "car: the same embedding as optimizeToken over its images");
  t.same(bank.get("car").losses, car.losses);

  const file = path.join(tmp, "bank.safetensors");
  await ovam.saveTokens(file, bank);
  const loaded = await ovam.loadTokens(file);
  t.same([...loaded.keys()], ["car", "dog"], "names in the order written");
  for (const [name, token] of bank) {
    const back = loaded.get(name);
    t.ok(back instanceof ovam.OptimizedToken);
    t.equal(back.text, token.text);
    t.equal(back.context, token.context);
    t.same(back.losses, token.losses);
    t.ok(same(back.embedding.data, token.embedding.data) && same(back.initial.data, token.initial.data), `${name}: tensors bit for bit`);
    t.same(back.embedding.shape, token.embedding.shape);
  }

  const dog = await ovam.resolveTokenRef("bank.safetensors#dog", tmp);
  t.ok(same(dog.embedding.data, bank.get("dog").embedding.data), "FILE#NAME relative to the base folder");
  await t.rejects(ovam.resolveTokenRef("bank.safetensors", tmp), { code: "ERR_OVAM_INVALID_OPTION", message: /car, dog/ }, "a bank of two needs #NAME");
  await t.rejects(ovam.resolveTokenRef("bank.safetensors#cat", tmp), { code: "ERR_OVAM_NOT_FOUND", message: /car, dog/ });
  await t.rejects(ovam.resolveTokenRef("missing.safetensors#car", tmp), { code: "ERR_OVAM_NOT_FOUND" });
  await t.rejects(ovam.resolveTokenRef("bank.safetensors#", tmp), { code: "ERR_OVAM_INVALID_OPTION" });
  await t.rejects(ovam.saveTokens(path.join(tmp, "x.safetensors"), { "a#b": car }), { code: "ERR_OVAM_INVALID_OPTION" }, '"#" in a name');
  await t.rejects(ovam.saveTokens(path.join(tmp, "x.safetensors"), {}), { code: "ERR_OVAM_INVALID_OPTION" });

  // A single token file reads as a bank of one, and as a plain reference.
  const single = path.join(tmp, "car.safetensors");
  await car.save(single);
  t.same([...(await ovam.loadTokens(single)).keys()], ["car"]);
  t.ok(same((await ovam.resolveTokenRef(single)).embedding.data, car.embedding.data));
  await t.rejects(ovam.loadToken(file), { code: "ERR_OVAM_INVALID_ARGUMENT" }, "a bank is not a token file");
  await t.rejects(ovam.loadTokens(path.join(root, "models", "tiny-sd1", "unet", "diffusion_pytorch_model.safetensors")), { code: "ERR_OVAM_INVALID_ARGUMENT" });
});

t.test("initial: optimisation resumes from a token", async (t) => {
  const target = examples[0].masks.car;
  const first = await ovam.optimizeToken(images[0], { text: "car", target, epochs: 4 });
  const resumed = await ovam.optimizeToken(images[0], { text: "car", target, epochs: 2, initial: first });
  t.ok(same(resumed.initial.data, first.embedding.data), "starts from the token's (best) embedding");
  t.equal(resumed.context, first.context, "keeps the token's context");
  const best = Math.min(...first.losses);
  t.ok(Math.abs(resumed.losses[0] - best) <= 1e-5 * Math.abs(best), `first loss ${resumed.losses[0]} = the token's best ${best}`);
  await t.rejects(ovam.optimizeToken(images[0], { text: "car", target, initial: { embedding: 1 } }), { code: "ERR_OVAM_INVALID_OPTION", option: "initial" });
  const wide = new ovam.OptimizedToken({ ...first, embedding: { data: new Float32Array(2 * 7), shape: [2, 7] } });
  await t.rejects(ovam.optimizeToken(images[0], { text: "car", target, initial: wide }), { code: "ERR_OVAM_INVALID_OPTION", message: /width 7/ });
});

t.test("ovam optimize --truth writes a bank; ovam attribute --token bank#name reads it", async (t) => {
  const gens = path.join(tmp, "train");
  const truth = path.join(tmp, "truth");
  fs.mkdirSync(gens);
  for (const [i, { image, masks }] of examples.entries()) {
    await image.save(path.join(gens, `img${i}.safetensors`));
    fs.mkdirSync(path.join(truth, `img${i}`), { recursive: true });
    for (const [name, mask] of Object.entries(masks)) fs.writeFileSync(path.join(truth, `img${i}`, `${name}.gt.png`), await ovam.encodeGray8(mask.width, mask.height, mask.data.map((v) => v * 255)));
  }
  const files = [0, 1, 2].map((i) => path.join(gens, `img${i}.safetensors`));
  const run = (args) => spawnSync(process.execPath, [cli, ...args], { cwd: tmp, encoding: "utf8", timeout: 300_000 });
  const bankFile = path.join(tmp, "cli-bank.safetensors");
  const made = run(["optimize", ...files, "--truth", truth, "--classes", "car,dog", "--epochs", "3", "--out", bankFile, "--json"]);
  t.equal(made.status, 0, made.stderr);
  const result = made.stdout.trim().split("\n").map((l) => JSON.parse(l)).find((r) => r.event === "result");
  t.same(result.bank.map((b) => b.name), ["car", "dog"]);
  const bank = await ovam.loadTokens(bankFile);
  const api = await ovam.optimizeTokens(examples, { epochs: 3 });
  for (const name of ["car", "dog"]) t.same(bank.get(name).losses, api.get(name).losses, `${name}: the CLI's losses are optimizeTokens()'s`);

  const resumed = run(["optimize", ...files, "--truth", truth, "--classes", "car,dog", "--epochs", "1", "--initial", bankFile, "--out", path.join(tmp, "bank2.safetensors")]);
  t.equal(resumed.status, 0, resumed.stderr);
  const bank2 = await ovam.loadTokens(path.join(tmp, "bank2.safetensors"));
  t.ok(same(bank2.get("car").initial.data, bank.get("car").embedding.data), "--initial: each class resumes from the bank's token");

  const maps = run(["attribute", files[0], "--token", `${bankFile}#dog`, "--out", path.join(tmp, "maps")]);
  t.equal(maps.status, 0, maps.stderr);
  t.ok(fs.existsSync(path.join(tmp, "maps", "token-dog.map.npy")), "the bank's dog token was attributed");

  const noIds = spawnSync(process.execPath, [cli, "optimize", files[0], "--truth", truth, "--out", bankFile], { cwd: tmp, encoding: "utf8" });
  t.equal(noIds.status, 2, "--truth without --classes is a usage error");
  t.match(noIds.stderr, /--classes/);
});
