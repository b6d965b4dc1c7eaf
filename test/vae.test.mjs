// AutoencoderKL against the diffusers 0.20.2 reference (golden fixtures), both variants, and a
// checkpoint with the pre-0.14 attention names (query/key/value/proj_attn as 1×1 convs).
import t from "tap";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { golden, relL2, modelDir, native } from "./helpers/golden.mjs";
import { readEntries, writeEntries } from "./helpers/safetensors-writer.mjs";

const TOLERANCE = 1e-4; // relative L2 per component (test/fixtures/README.md)
const asTensor = ({ data, shape }) => ({ data, shape });

// The reference decodes latents / scaling_factor computed in float32.
function scaledLatents(variant) {
  const { json, tensors } = golden(variant);
  const latents = tensors[json.vae_decode.latents];
  const factor = Math.fround(json.vae_decode.scaling_factor);
  return { data: latents.data.map((x) => x / factor), shape: latents.shape };
}

function check(t, what, out, ref) {
  t.same(out.shape, ref.shape, `${what} shape`);
  const err = relL2(out.data, ref.data);
  t.comment(`${what}: relL2 ${err.toExponential(3)}`);
  t.ok(err < TOLERANCE, `${what}: relL2 ${err.toExponential(3)} < ${TOLERANCE}`);
}

for (const variant of ["sd1", "sd2"]) {
  const { json, tensors } = golden(variant);
  const folder = path.join(modelDir(variant), "vae");

  t.test(`${variant} vae decode`, async (t) => {
    const out = await native().components.vaeDecode(folder, scaledLatents(variant));
    check(t, `${variant} vae_decode`, out, tensors[json.vae_decode.out]);
  });

  t.test(`${variant} vae encode`, async (t) => {
    const { mean, std } = await native().components.vaeEncode(folder, asTensor(tensors[json.vae_encode.image]));
    check(t, `${variant} vae_encode mean`, mean, tensors[json.vae_encode.mean]);
    check(t, `${variant} vae_encode std`, std, tensors[json.vae_encode.std]);
  });
}

const LEGACY = { to_q: "query", to_k: "key", to_v: "value", "to_out.0": "proj_attn" };

t.test("vae with pre-0.14 attention names and 1×1 conv shapes", async (t) => {
  const { json, tensors } = golden("sd1");
  const src = path.join(modelDir("sd1"), "vae");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-legacy-vae-"));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.copyFileSync(path.join(src, "config.json"), path.join(dir, "config.json"));
  const { entries, metadata } = readEntries(path.join(src, "diffusion_pytorch_model.safetensors"));
  let renamed = 0;
  const legacyEntries = entries.map((e) => {
    const m = e.name.match(/^(.*\.mid_block\.attentions\.0\.)(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/);
    if (!m) return e;
    renamed++;
    return { ...e, name: `${m[1]}${LEGACY[m[2]]}.${m[3]}`, shape: m[3] === "weight" ? [...e.shape, 1, 1] : e.shape };
  });
  writeEntries(path.join(dir, "diffusion_pytorch_model.safetensors"), legacyEntries, metadata);
  t.equal(renamed, 16, "encoder and decoder attention: 4 projections × (weight, bias) each");
  const written = await native().components.safetensors(path.join(dir, "diffusion_pytorch_model.safetensors"));
  t.ok(written.some((e) => e.name === "decoder.mid_block.attentions.0.query.weight" && e.shape.length === 4), "legacy file written");

  const latents = scaledLatents("sd1");
  const [legacy, current] = await Promise.all([
    native().components.vaeDecode(dir, latents),
    native().components.vaeDecode(src, latents),
  ]);
  check(t, "sd1 vae_decode (legacy names)", legacy, tensors[json.vae_decode.out]);
  t.equal(relL2(legacy.data, current.data), 0, "identical to the current names");
});
