// The module trees built from the real releases' configs carry exactly the tensor names and shapes
// of those releases' files (diffusers / transformers layout), in the same order.
import t from "tap";
import fs from "node:fs";
import path from "node:path";
import { fixtures, native } from "./helpers/golden.mjs";

const release = (name) => JSON.parse(fs.readFileSync(path.join(fixtures, "architectures", `${name}.json`), "utf8"));

// The fixture summarises the text encoder config; the releases' config.json (transformers
// CLIPTextConfig) spells it out. CLIP's MLP is 4 × width, its context 77 tokens.
// SDXL's second encoder is CLIPTextModelWithProjection, its projection as wide as the encoder.
const clipTextConfig = (c, withProjection = false) => ({
  architectures: [withProjection ? "CLIPTextModelWithProjection" : "CLIPTextModel"],
  ...(withProjection ? { projection_dim: c.width } : {}),
  hidden_act: c.hidden_act,
  hidden_size: c.width,
  intermediate_size: 4 * c.width,
  num_attention_heads: c.heads,
  num_hidden_layers: c.layers,
  max_position_embeddings: 77,
  vocab_size: 49408,
  layer_norm_eps: 1e-5,
});

// Not a parameter: older text encoder exports carry it as a buffer.
const IGNORED = new Set(["text_model.embeddings.position_ids"]);

async function compare(t, kind, config, expected) {
  const got = await native().components.architecture(kind, JSON.stringify(config));
  const want = expected.filter(([name]) => !IGNORED.has(name));
  const wantNames = new Set(want.map(([name]) => name));
  const gotNames = new Set(got.map(([name]) => name));
  t.same(got.filter(([n]) => !wantNames.has(n)).map(([n]) => n), [], `${kind}: no tensor the release lacks`);
  t.same(want.filter(([n]) => !gotNames.has(n)).map(([n]) => n), [], `${kind}: no tensor of the release missing`);
  t.same(got, want, `${kind}: ${want.length} names and shapes, in order`);
}

for (const name of ["sd15", "sd21"]) {
  const arch = release(name);
  t.test(`${name} unet`, (t) => compare(t, "unet", arch.unet_config, arch.unet));
  t.test(`${name} vae`, (t) => compare(t, "vae", arch.vae_config, arch.vae));
}

t.test("sdxl unet (transformer layers per block, text_time added conditions)", (t) => {
  const arch = release("sdxl");
  return compare(t, "unet", arch.unet_config, arch.unet);
});

t.test("sdxl vae (same AutoencoderKL)", (t) => {
  const arch = release("sdxl");
  return compare(t, "vae", arch.vae_config, arch.vae);
});

t.test("unet configs with what is not implemented are rejected, naming the key", async (t) => {
  const sd15 = release("sd15").unet_config;
  const cases = [
    [{ ...sd15, transformer_layers_per_block: [1, 0, 1, 1] }, "transformer_layers_per_block"],
    [{ ...sd15, addition_embed_type: "text" }, "addition_embed_type"],
    [{ ...sd15, addition_embed_type: "text_time" }, "addition_time_embed_dim"],
    [{ ...sd15, class_embed_type: "timestep" }, "class_embed_type"],
    [{ ...sd15, resnet_time_scale_shift: "scale_shift" }, "resnet_time_scale_shift"],
    [{ ...sd15, time_embedding_type: "fourier" }, "time_embedding_type"],
    [{ ...sd15, down_block_types: ["SimpleCrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"] }, "down_block_types"],
    [{ ...sd15, attention_head_dim: 7 }, "attention_head_dim"],
    [{ ...sd15, up_block_types: ["UpBlock2D"] }, "up_block_types"],
  ];
  for (const [config, key] of cases) {
    await t.rejects(native().components.architecture("unet", JSON.stringify(config)),
      { code: "ERR_OVAM_CONFIG", message: new RegExp(`"${key}"`) }, `${key} rejected`);
  }
  const vae = release("sd15").vae_config;
  await t.rejects(native().components.architecture("vae", JSON.stringify({ ...vae, down_block_types: ["DownBlock2D", ...vae.down_block_types.slice(1)] })),
    { code: "ERR_OVAM_CONFIG", message: /"down_block_types"/ }, "vae block type rejected");
});

// Last: the text encoder is built by another module of the core.
for (const name of ["sd15", "sd21", "sdxl"]) {
  const arch = release(name);
  t.test(`${name} text_encoder`, (t) => compare(t, "text_encoder", clipTextConfig(arch.text_config), arch.text_encoder));
}
t.test("sdxl text_encoder_2 (CLIPTextModelWithProjection)", (t) => {
  const arch = release("sdxl");
  return compare(t, "text_encoder", clipTextConfig(arch.text_config_2, true), arch.text_encoder_2);
});
