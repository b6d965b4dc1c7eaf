// The dense CRF against every `dense_crf` fixture case (SimpleCRF's densecrf: Krähenbühl's
// permutohedral-lattice mean field), its independence of the thread count, and its bad inputs.
import t from "tap";
import path from "node:path";
import { createRequire } from "node:module";

import { golden, root } from "./helpers/golden.mjs";
import { variants } from "./helpers/pipeline.mjs";

const require = createRequire(import.meta.url);
const ovam = require(path.join(root, "dist", "index.js"));

// The fixtures' H × W × L probabilities as our [L, H, W] planes.
function planes(prob) {
  const [h, w, l] = prob.shape;
  const data = new Float32Array(l * h * w);
  for (let i = 0; i < h * w; i++) for (let c = 0; c < l; c++) data[c * h * w + i] = prob.data[i * l + c];
  return { data, shape: [l, h, w] };
}

function caseInputs(variant, c) {
  const { tensors } = golden(variant);
  const image = tensors[c.image];
  const [height, width] = image.shape;
  return { image: { data: image.data, width, height }, probabilities: planes(tensors[c.prob]), labels: tensors[c.labels].data };
}

for (const variant of variants) {
  t.test(`dense CRF fixtures ${variant}`, async (t) => {
    for (const c of golden(variant).json.dense_crf) {
      const { image, probabilities, labels } = caseInputs(variant, c);
      const out = await ovam.denseCRF(image, probabilities, c.params);
      t.same([out.width, out.height], [image.width, image.height], `${c.label}: size`);
      let agree = 0;
      for (let i = 0; i < labels.length; i++) agree += out.data[i] === labels[i] ? 1 : 0;
      const share = agree / labels.length;
      t.ok(share >= 0.995, `${c.label}: ${(100 * share).toFixed(2)} % of pixels agree (≥ 99.5 %)`);
    }
  });
}

t.test("the same labels on one thread and on several", async (t) => {
  const c = golden("sd1").json.dense_crf.find((c) => c.label === "soft_three_nonsquare");
  const { image, probabilities } = caseInputs("sd1", c);
  const one = await ovam.denseCRF(image, probabilities, { ...c.params, threads: 1 });
  const several = await ovam.denseCRF(image, probabilities, { ...c.params, threads: 3 });
  t.same(Array.from(several.data), Array.from(one.data), "identical label maps");
});

t.test("bad inputs", async (t) => {
  const c = golden("sd1").json.dense_crf[0];
  const { image, probabilities } = caseInputs("sd1", c);
  const [, h, w] = probabilities.shape;
  const rejects = (label, call, props) => t.rejects(call(), props, label);
  const option = (name) => ({ name: "InvalidOptionError", code: "ERR_OVAM_INVALID_OPTION", option: name });
  await rejects("one label", () => ovam.denseCRF(image, { data: new Float32Array(h * w), shape: [1, h, w] }), option("probabilities"));
  await rejects("256 labels", () => ovam.denseCRF(image, { data: new Float32Array(256 * h * w), shape: [256, h, w] }), option("probabilities"));
  await rejects("probabilities of another size", () => ovam.denseCRF(image, { data: new Float32Array(2 * h * (w - 1)), shape: [2, h, w - 1] }), option("probabilities"));
  await rejects("data shorter than its shape", () => ovam.denseCRF(image, { data: new Float32Array(10), shape: [2, h, w] }), option("probabilities"));
  await rejects("image bytes of another size", () => ovam.denseCRF({ ...image, data: image.data.subarray(3) }, probabilities), option("image"));
  await rejects("an image that is not bytes", () => ovam.denseCRF({ ...image, data: new Float32Array(image.data.length) }, probabilities), option("image"));
  await rejects("alpha 0", () => ovam.denseCRF(image, probabilities, { alpha: 0 }), option("alpha"));
  await rejects("fractional iterations", () => ovam.denseCRF(image, probabilities, { iterations: 1.5 }), option("iterations"));
  await rejects("an unknown option", () => ovam.denseCRF(image, probabilities, { sigma: 3 }), option("sigma"));
  const nan = { data: probabilities.data.slice(), shape: probabilities.shape };
  nan.data[17] = NaN;
  await rejects("NaN probabilities", () => ovam.denseCRF(image, nan), { name: "InvalidArgumentError", code: "ERR_OVAM_INVALID_ARGUMENT" });
  const none = await ovam.denseCRF(image, probabilities, { iterations: 0, w1: 0, w2: 0 });
  const clip = (p) => Math.min(Math.max(p, 0.01), 0.99);
  let argmax = 0;
  for (let i = 0; i < h * w; i++) argmax += none.data[i] === (clip(probabilities.data[h * w + i]) > clip(probabilities.data[i]) ? 1 : 0) ? 1 : 0;
  t.equal(argmax, h * w, "no iterations: the argmax of the clipped probabilities (ties to label 0)");
});
