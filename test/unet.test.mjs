// UNet2DConditionModel against the diffusers 0.20.2 reference (golden fixtures), both variants,
// and the same weights read from a TorchScript archive.
import t from "tap";
import path from "node:path";
import { golden, relL2, modelDir, native, fixtures } from "./helpers/golden.mjs";

const TOLERANCE = 1e-4; // relative L2 per component (test/fixtures/README.md)
const asTensor = ({ data, shape }) => ({ data, shape });

function runUnet(variant, c, weights) {
  const { tensors } = golden(variant);
  return native().components.unet(path.join(modelDir(variant), "unet"), {
    latents: asTensor(tensors[c.latents]),
    timestep: c.timestep,
    context: asTensor(tensors[c.context]),
    ...(weights ? { weights } : {}),
  });
}

for (const variant of ["sd1", "sd2"]) {
  const { json, tensors } = golden(variant);
  for (const c of json.unet) {
    t.test(`${variant} unet timestep ${c.timestep}`, async (t) => {
      const out = await runUnet(variant, c);
      const ref = tensors[c.out];
      t.same(out.shape, ref.shape, "output shape");
      const err = relL2(out.data, ref.data);
      t.comment(`${variant} unet t=${c.timestep}: relL2 ${err.toExponential(3)}`);
      t.ok(err < TOLERANCE, `relL2 ${err.toExponential(3)} < ${TOLERANCE}`);
    });
  }
}

t.test("sd1 unet with weights from a TorchScript archive", async (t) => {
  const { json, tensors } = golden("sd1");
  const archive = path.join(fixtures, "tiny-sd1", "unet.torchscript.pt");
  for (const c of json.unet) {
    const [fromArchive, fromSafetensors] = await Promise.all([runUnet("sd1", c, archive), runUnet("sd1", c)]);
    const err = relL2(fromArchive.data, tensors[c.out].data);
    t.comment(`sd1 unet (TorchScript weights) t=${c.timestep}: relL2 ${err.toExponential(3)}`);
    t.ok(err < TOLERANCE, `t=${c.timestep}: relL2 ${err.toExponential(3)} < ${TOLERANCE}`);
    // Same stored values either way, so the same numbers.
    t.equal(relL2(fromArchive.data, fromSafetensors.data), 0, `t=${c.timestep}: identical to the safetensors weights`);
  }
});
