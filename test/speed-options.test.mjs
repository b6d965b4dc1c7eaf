// What issue 16 added for speed, held to the float32 results: the text key cache (a repeated text
// is attributed from stored keys, with the same maps; the cache stays within its bytes), attention
// formed in blocks of queries (generation at sizes past the block threshold equals the fixtures'
// pipeline through the same code path), and dtype "auto", the default. The comparisons run in
// float32, the dtype their tolerances were measured in.
import t from "tap";
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

import { relL2, root } from "./helpers/golden.mjs";

const require = createRequire(import.meta.url);
const ovam = require(path.join(root, "dist", "index.js"));

const same = (a, b) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

t.test("the text key cache: hits on a repeated text, same maps as without it, bounded", async (t) => {
  const cached = await ovam.load({ dtype: "float32", textKeyCacheBytes: 64 * 2 ** 20 });
  const uncached = await ovam.load({ dtype: "float32", textKeyCacheBytes: 0 });
  t.teardown(() => [cached, uncached].forEach((p) => p.dispose()));
  const request = { prompt: "a car next to a tree", steps: 4, seed: 3 };
  const [a, b] = [await ovam.generate(cached, request), await ovam.generate(uncached, request)];
  t.same(cached.textKeyCache(), { hits: 0, misses: 0, entries: 0, bytes: 0, capacity: 64 * 2 ** 20 }, "empty at first");

  const first = await ovam.attribute(a, "a red car");
  const afterFirst = cached.textKeyCache();
  t.same([afterFirst.hits, afterFirst.misses, afterFirst.entries], [0, 1, 1], "the first attribution misses and stores its keys");
  t.ok(afterFirst.bytes > 0 && afterFirst.bytes <= afterFirst.capacity, `it holds ${afterFirst.bytes} bytes`);
  for (const mode of ["softmax", "linear"]) {
    const again = await ovam.attribute(a, "a red car", { mode });
    const reference = await ovam.attribute(b, "a red car", { mode });
    t.ok(same(again.data, reference.data), `${mode}: the cached keys give the maps of an uncached pipeline, bit for bit`);
  }
  t.ok(same(first.data, (await ovam.attribute(b, "a red car")).data), "and so did the first call");
  const afterRepeat = cached.textKeyCache();
  t.same([afterRepeat.hits, afterRepeat.entries], [2, 1], "the two repeated calls hit the cache");
  t.same(uncached.textKeyCache().entries, 0, "a pipeline with textKeyCacheBytes 0 keeps nothing");

  // A cache big enough for about two texts keeps the most recent ones.
  const small = await ovam.load({ dtype: "float32", textKeyCacheBytes: Math.floor(afterFirst.bytes * 2.5) });
  t.teardown(() => small.dispose());
  const c = await ovam.generate(small, request);
  for (const text of ["a red car", "a tree", "a dog", "a house"]) await ovam.attribute(c, text);
  const bounded = small.textKeyCache();
  t.ok(bounded.bytes <= bounded.capacity, `within its ${bounded.capacity} bytes (${bounded.bytes})`);
  t.ok(bounded.entries >= 1 && bounded.entries < 4, `older texts were evicted (${bounded.entries} kept of 4)`);
  await ovam.attribute(c, "a house");
  t.equal(small.textKeyCache().hits, bounded.hits + 1, "the most recent text is still there");
  for (const image of [a, b, c]) image.dispose();
});

t.test("attention in blocks of queries equals whole-matrix attention", async (t) => {
  // At 512×384 the tiny UNet's 64×48 self-attention holds 2 (guidance) × 2 heads × 3072² float32
  // scores, 144 MiB: past the default 128 MiB block, so it runs in two blocks of queries, and with
  // attentionBlockBytes 1 MiB in 146 blocks (the VAE's attention too). attentionBlockBytes 0 forms
  // whole matrices. The self-attention capture sums the blocks as they come.
  const [blocked, tiny, whole] = await Promise.all(
    [undefined, 2 ** 20, 0].map((attentionBlockBytes) => ovam.load({ dtype: "float32", attentionBlockBytes })),
  );
  t.teardown(() => [blocked, tiny, whole].forEach((p) => p.dispose()));
  const request = { prompt: "a car", steps: 1, seed: 5, width: 512, height: 384, capture: { selfAttention: { sides: [64] } } };
  const reference = await ovam.generate(whole, request);
  for (const [name, sd] of [["default 128 MiB blocks", blocked], ["1 MiB blocks", tiny]]) {
    const image = await ovam.generate(sd, request);
    const latents = relL2(image.latents.data, reference.latents.data);
    t.ok(latents < 1e-6, `${name}: latents relL2 ${latents.toExponential(2)} < 1e-6`);
    const pixels = relL2(Float32Array.from(image.pixels), Float32Array.from(reference.pixels));
    t.ok(pixels < 1e-3, `${name}: decoded image relL2 ${pixels.toExponential(2)} < 1e-3`);
    t.same(image.selfAttentionGrids, reference.selfAttentionGrids, `${name}: the same grids, each call counted once`);
    t.same(image.selfAttentionGrids.map((g) => [g.height, g.width]), [[48, 64]], `${name}: the 64×48 self-attention was captured`);
    const grid = relL2((await image.selfAttention(64)).data, (await reference.selfAttention(64)).data);
    t.ok(grid < 1e-6, `${name}: its self-attention mean relL2 ${grid.toExponential(2)} < 1e-6`);
    image.dispose();
  }
  reference.dispose();
});

t.test("load options: textKeyCacheBytes and attentionBlockBytes are checked; dtype auto is the default, float32 stays float32", async (t) => {
  for (const option of ["textKeyCacheBytes", "attentionBlockBytes"])
    for (const bad of [-1, 1.5, "64"]) {
      const error = await ovam.load({ [option]: bad }).then(() => undefined, (e) => e);
      t.ok(error instanceof ovam.InvalidOptionError, `${option} ${JSON.stringify(bad)}: ${error?.message}`);
      t.equal(error?.option, option);
    }
  const bf16 = fs.readFileSync("/proc/cpuinfo", "utf8").match(/^flags\s*:.*\b(avx512_bf16|amx_bf16)\b/m) !== null;
  const expected = bf16 ? "bfloat16" : "float32";
  const [byDefault, auto, exact] = [await ovam.load(), await ovam.load({ dtype: "auto" }), await ovam.load({ dtype: "float32" })];
  t.teardown(() => [byDefault, auto, exact].forEach((p) => p.dispose()));
  t.equal(auto.dtype, expected, `auto on this CPU (${bf16 ? "with" : "without"} AVX-512 BF16/AMX) is ${auto.dtype}`);
  t.equal(byDefault.dtype, expected, `and so is the default (${byDefault.dtype})`);
  t.equal(exact.dtype, "float32", "an explicit float32 stays float32");
  const request = { prompt: "a car", steps: 2, seed: 1 };
  const [image, reference] = [await ovam.generate(byDefault, request), await ovam.generate(exact, request)];
  t.equal(image.attentionBytes, reference.attentionBytes, "the capture store stays float32 (the same bytes as a float32 pipeline's)");
  // bfloat16 images of this model measured 0.8–2.3e-2 in relative L2 from float32's (2–10 steps,
  // seeds 1–3; the README's ~1e-2 on the fixtures): held to twice the worst. Without bf16 the same.
  const e = relL2(Float32Array.from(image.pixels), Float32Array.from(reference.pixels));
  t.ok(bf16 ? e > 0 && e < 5e-2 : e === 0, `the default's image is ${e.toExponential(2)} from float32's in relative L2`);
  for (const x of [image, reference]) x.dispose();
});
