// The CLIP text encoder against the reference's last hidden state (after final_layer_norm, all 77
// positions) for every fixture case of both variants (quick_gelu for sd1, gelu for sd2).
import t from "tap";
import path from "node:path";
import { golden, modelDir, native, relL2 } from "./helpers/golden.mjs";

const TOLERANCE = 1e-4;

for (const variant of ["sd1", "sd2"]) {
  t.test(`${variant} text encoder`, async (t) => {
    const { json, tensors } = golden(variant);
    t.ok(json.text_encoder.length > 0, "the fixture has text encoder cases");
    for (const c of json.text_encoder) {
      const ref = tensors[c.out];
      const out = await native().components.textEncoder(path.join(modelDir(variant), "text_encoder"), c.ids);
      t.same(out.shape, ref.shape, `${JSON.stringify(c.text)}: shape ${ref.shape}`);
      const err = relL2(out.data, ref.data);
      t.ok(err < TOLERANCE, `${JSON.stringify(c.text)}: relative L2 error ${err.toExponential(2)} < ${TOLERANCE}`);
    }
  });
}
