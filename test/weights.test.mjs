// Loading model components from damaged or unsupported checkpoints: each fault is reported with
// its code and names the file and the tensor (or config key and value) at fault.
import t from "tap";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fixtures, modelDir, native } from "./helpers/golden.mjs";
import { readEntries, writeEntries } from "./helpers/safetensors-writer.mjs";

const load = (kind, folder, options) => native().components.loadComponent(kind, folder, options);
const WEIGHTS = { vae: "diffusion_pytorch_model.safetensors", unet: "diffusion_pytorch_model.safetensors", text_encoder: "model.safetensors" };
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-weights-"));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

const escape = (s) => new RegExp(s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));

// A fresh copy of a tiny-sd1 component folder; `edit` changes its entries or its config.
let copies = 0;
function component(kind, { entries: editEntries, config: editConfig } = {}) {
  const dir = path.join(tmp, `${kind}-${++copies}`);
  fs.cpSync(path.join(modelDir("sd1"), kind), dir, { recursive: true });
  const weights = path.join(dir, WEIGHTS[kind]);
  if (editEntries) {
    const { entries, metadata } = readEntries(weights);
    writeEntries(weights, editEntries(entries), metadata);
  }
  if (editConfig) {
    const file = path.join(dir, "config.json");
    const config = JSON.parse(fs.readFileSync(file, "utf8"));
    editConfig(config);
    fs.writeFileSync(file, JSON.stringify(config, null, 2));
  }
  return { dir, weights, config: path.join(dir, "config.json") };
}

async function rejects(t, promise, code, patterns) {
  let e = null;
  try {
    await promise;
  } catch (err) {
    e = err;
  }
  if (!t.ok(e, "rejects")) return;
  t.equal(e.code, code, `code (message: ${e.message})`);
  for (const p of patterns) t.match(e.message, p, `message names ${p}`);
}

t.test("the unmodified components load strictly", async (t) => {
  for (const kind of ["vae", "unet", "text_encoder"]) {
    await t.resolves(load(kind, path.join(modelDir("sd1"), kind), { strict: true }), kind);
  }
});

t.test("a missing tensor", async (t) => {
  for (const [kind, name] of [["vae", "decoder.conv_out.weight"], ["unet", "conv_out.weight"], ["text_encoder", "text_model.final_layer_norm.weight"]]) {
    const c = component(kind, { entries: (list) => list.filter((e) => e.name !== name) });
    await t.test(kind, (t) => rejects(t, load(kind, c.dir), "ERR_OVAM_WEIGHTS", [escape(c.weights), escape(`missing tensor "${name}"`), /expected shape \[/]));
  }
});

t.test("an extra unknown tensor", async (t) => {
  const extra = { name: "decoder.conv_extra.weight", dtype: "F32", shape: [2, 2], bytes: Buffer.alloc(16) };
  const c = component("vae", { entries: (list) => [...list, extra] });
  await t.test("rejected by a strict load", (t) =>
    rejects(t, load("vae", c.dir, { strict: true }), "ERR_OVAM_WEIGHTS", [escape(c.weights), /unexpected tensor "decoder\.conv_extra\.weight" \[2, 2\]/]));
  await t.test("a strict load is the default", (t) =>
    rejects(t, load("vae", c.dir), "ERR_OVAM_WEIGHTS", [/unexpected tensor "decoder\.conv_extra\.weight"/]));
  await t.test("ignored by a lenient load", (t) => t.resolves(load("vae", c.dir, { strict: false })));
});

t.test("a shape mismatch", async (t) => {
  // Same bytes, another shape: only the shape check can catch it.
  const reshape = (name, shape) => (list) => list.map((e) => (e.name === name ? { ...e, shape } : e));
  const vae = component("vae", { entries: reshape("decoder.conv_out.weight", [3, 32, 9]) });
  await t.test("vae", (t) =>
    rejects(t, load("vae", vae.dir), "ERR_OVAM_WEIGHTS", [escape(vae.weights), /tensor "decoder\.conv_out\.weight" has shape \[3, 32, 9\], expected \[3, 32, 3, 3\]/]));
  const unet = component("unet", { entries: reshape("conv_out.weight", [32, 4, 3, 3]) });
  await t.test("unet", (t) =>
    rejects(t, load("unet", unet.dir), "ERR_OVAM_WEIGHTS", [escape(unet.weights), /tensor "conv_out\.weight" has shape \[32, 4, 3, 3\], expected \[4, 32, 3, 3\]/]));
});

t.test("a config value that is not implemented", async (t) => {
  const unet = component("unet", { config: (c) => { c.down_block_types[1] = "SimpleCrossAttnDownBlock2D"; } });
  await t.test("unet down_block_types", (t) =>
    rejects(t, load("unet", unet.dir), "ERR_OVAM_CONFIG", [escape(unet.config), /down_block_types/, /SimpleCrossAttnDownBlock2D/]));
  const vae = component("vae", { config: (c) => { c.act_fn = "gelu"; } });
  await t.test("vae act_fn", (t) => rejects(t, load("vae", vae.dir), "ERR_OVAM_CONFIG", [escape(vae.config), /act_fn/, /gelu/]));
  const text = component("text_encoder", { config: (c) => { c.hidden_act = "relu6"; } });
  await t.test("text encoder hidden_act", (t) =>
    rejects(t, load("text_encoder", text.dir), "ERR_OVAM_CONFIG", [escape(text.config), /hidden_act/, /relu6/]));
  const broken = component("vae");
  fs.writeFileSync(broken.config, "{ not json");
  await t.test("config.json not JSON", (t) => rejects(t, load("vae", broken.dir), "ERR_OVAM_CONFIG", [escape(broken.config), /not valid JSON/]));
});

t.test("missing folders and files", async (t) => {
  const none = path.join(tmp, "no-such-folder");
  await t.test("a missing folder", (t) => rejects(t, load("unet", none), "ERR_OVAM_NOT_FOUND", [escape(none)]));
  const empty = component("vae");
  fs.rmSync(empty.weights);
  await t.test("a folder without weights", (t) =>
    rejects(t, load("vae", empty.dir), "ERR_OVAM_NOT_FOUND", [escape(empty.dir), /diffusion_pytorch_model\.safetensors/]));
  const unet = path.join(modelDir("sd1"), "unet");
  await t.test("a missing weights file given explicitly", (t) =>
    rejects(t, load("unet", unet, { weights: path.join(tmp, "none.safetensors") }), "ERR_OVAM_NOT_FOUND", [/none\.safetensors/]));
  const odd = path.join(tmp, "weights.bin");
  fs.writeFileSync(odd, "x");
  await t.test("a weights file of unknown format", (t) =>
    rejects(t, load("unet", unet, { weights: odd }), "ERR_OVAM_WEIGHTS", [escape(odd), /unknown weights format/]));
  await t.test("TorchScript weights given explicitly", (t) =>
    t.resolves(load("unet", unet, { weights: path.join(fixtures, "tiny-sd1", "unet.torchscript.pt") })));
});

t.test("a truncated weights file", async (t) => {
  const c = component("vae");
  const whole = fs.readFileSync(c.weights);
  fs.writeFileSync(c.weights, whole.subarray(0, Math.floor(whole.length * 0.9)));
  await rejects(t, load("vae", c.dir), "ERR_OVAM_SAFETENSORS", [escape(c.weights), /tensor "[^"]+": data_offsets .* out of range/]);
});

t.test("the text encoder tolerates text_model.embeddings.position_ids", async (t) => {
  // transformers < 4.31 saved this buffer; real SD 1.x text encoders carry it.
  const ids = Buffer.alloc(77 * 8);
  for (let i = 0; i < 77; i++) ids.writeBigInt64LE(BigInt(i), i * 8);
  const positions = { name: "text_model.embeddings.position_ids", dtype: "I64", shape: [1, 77], bytes: ids };
  const c = component("text_encoder", { entries: (list) => [...list.filter((e) => e.name !== positions.name), positions] });
  await t.resolves(load("text_encoder", c.dir, { strict: true }));
});
