// Every OVAM attribution case of the fixtures (vpulab/ovam get_ovam_callable with the listed
// knobs) on both tiny models, from our own generation's capture.
import t from "tap";
import { golden, relL2 } from "./helpers/golden.mjs";
import { referenceGeneration, variants } from "./helpers/pipeline.mjs";

// OVAM's knob names → ours.
function optionsOf(c) {
  const o = c.options;
  const act = (a) => (a === undefined || a === "linear" ? "none" : a);
  return {
    mode: o.heads_epochs_activation === "linear" ? "linear" : "softmax",
    headActivation: act(o.heads_activation),
    headAggregation: o.heads_aggregation ?? "sum",
    blockInterpolation: o.block_interpolation_mode ?? "bilinear",
    mapAggregation: o.heatmaps_aggregation ?? "sum",
    mapActivation: "none",
    size: c.expand_size,
  };
}

const captureOf = (label) =>
  label === "with_mid_block" ? { midBlock: true } : label === "cond_branch" ? { branch: "conditional" } : {};

for (const variant of variants) {
  t.test(`ovam ${variant}`, async (t) => {
    const { json, tensors } = golden(variant);
    const generations = new Map();
    for (const c of json.ovam) {
      const key = JSON.stringify(captureOf(c.label));
      if (!generations.has(key)) generations.set(key, await referenceGeneration(variant, captureOf(c.label)));
      const g = generations.get(key);
      const out = await g.attribute({ text: c.text }, optionsOf(c));
      t.same(out.ids, c.ids, `${c.label}: token ids`);
      const ref = tensors[c.out];
      t.same(out.maps.shape, ref.shape.slice(1), `${c.label}: shape`);
      const e = relL2(out.maps.data, ref.data);
      t.ok(e < 1e-3, `${c.label}: relL2 ${e.toExponential(2)} < 1e-3`);
    }
  });
}
