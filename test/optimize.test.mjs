// OVAM's optimize_embedding on both tiny models: the initial token, the loss curve, the final
// embedding and its map.
import t from "tap";
import { golden, relL2 } from "./helpers/golden.mjs";
import { referenceGeneration, variants } from "./helpers/pipeline.mjs";

for (const variant of variants) {
  t.test(`optimize ${variant}`, async (t) => {
    const { json, tensors } = golden(variant);
    const o = json.optimize;
    const g = await referenceGeneration(variant);
    const target = tensors[o.target]; // [1, 2, H, W]
    const epochs = [];
    const job = g.optimize([], {
      text: o.text,
      context: o.context,
      targets: [{ data: target.data, shape: target.shape.slice(1) }],
      epochs: o.epochs,
      lr: o.lr,
      stepSize: o.step_size,
      gamma: o.gamma,
      attribute: {},
    }, (epoch, loss) => epochs.push([epoch, loss]));
    const r = await job.promise;
    const ei = relL2(r.initial.data, tensors[o.initial].data);
    t.ok(ei < 1e-4, `initial embedding relL2 ${ei.toExponential(2)}`);
    t.equal(r.losses.length, o.epochs);
    // Every epoch: the step decay (StepLR) must fall on the same epochs as the reference's.
    for (let i = 0; i < o.epochs; i++) {
      const rel = Math.abs(r.losses[i] - o.losses[i]) / Math.abs(o.losses[i]);
      t.ok(rel < 1e-3, `epoch ${i}: loss ${r.losses[i].toFixed(6)} vs ${o.losses[i].toFixed(6)} (rel ${rel.toExponential(2)})`);
    }
    const ef = relL2(r.final.data, tensors[o.final].data);
    t.ok(ef < 1e-3, `final embedding relL2 ${ef.toExponential(2)}`);
    const map = await g.attribute({ embeddings: r.final }, { size: target.shape.slice(2) });
    const em = relL2(map.maps.data, tensors[o.final_map].data);
    t.ok(em < 1e-3, `final map relL2 ${em.toExponential(2)}`);
    const best = Math.min(...r.losses);
    t.ok(r.losses.indexOf(best) >= 0 && best <= r.losses[0], "the best epoch is kept");
    await new Promise((resolve) => setImmediate(resolve));
    t.ok(epochs.length > 0, "onEpoch reported progress");
  });
}
