// Attribution's fused softmax pass, and its gradient in the keys (token optimisation), and the
// linear mode's one-pass sum of the queries over steps, against
// the same by libtorch tensor operations and autograd, on shapes
// that hit every edge of the kernel: pixel counts that are not multiples of 8 (padded lanes),
// head sizes that are not multiples of 8 (or even: small tiles split j in two), token counts
// around its 12-token tiles, one token,
// and score ranges large enough that the max-subtraction matters. Texts of up to 6 tokens take
// the row scoring on AVX-512 CPUs: head sizes of whole vectors, of a partial last vector, of odd
// multiples of 8 (read as pairs of rows: 24, 40, 56), and past its 192 (back to the transpose).
import t from "tap";
import fs from "node:fs";
import { native, relL2 } from "./helpers/golden.mjs";

// A seeded generator so each case is the same on every run.
function random(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

function tensor(shape, scale, next) {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = next() * scale;
  return { data, shape };
}

// Read independently of the addon: on an x86-64 CPU with AVX2 and FMA the fused pass must run.
const flags = fs.existsSync("/proc/cpuinfo") ? fs.readFileSync("/proc/cpuinfo", "utf8") : "";
const expectFused = process.arch === "x64" && /\bavx2\b/.test(flags) && /\bfma\b/.test(flags);

const cases = [
  { heads: 2, steps: 3, n: 64, d: 16, tokens: 12 },
  { heads: 2, steps: 2, n: 4, d: 32, tokens: 7 },
  { heads: 3, steps: 5, n: 13, d: 40, tokens: 13 },
  { heads: 1, steps: 1, n: 1, d: 5, tokens: 1 },
  { heads: 8, steps: 2, n: 1030, d: 80, tokens: 25 },
  { heads: 2, steps: 4, n: 9, d: 160, tokens: 3 },
  { heads: 2, steps: 2, n: 17, d: 33, tokens: 5 },
  { heads: 2, steps: 2, n: 24, d: 8, tokens: 77, scale: 60 },
  { heads: 2, steps: 3, n: 37, d: 40, tokens: 3, scale: 8 },
  { heads: 2, steps: 2, n: 16, d: 24, tokens: 2 },
  { heads: 1, steps: 2, n: 33, d: 56, tokens: 4 },
  { heads: 2, steps: 2, n: 20, d: 64, tokens: 6 },
  { heads: 2, steps: 2, n: 35, d: 192, tokens: 1 },
  { heads: 2, steps: 2, n: 5, d: 200, tokens: 3 },
];

for (const [i, c] of cases.entries()) {
  t.test(`heads ${c.heads}, steps ${c.steps}, pixels ${c.n}, head size ${c.d}, tokens ${c.tokens}`, async (t) => {
    const next = random(1000 + i);
    const queries = tensor([c.heads, c.steps, c.n, c.d], 2, next);
    const keys = tensor([c.heads, c.tokens, c.d], c.scale ?? 1, next);
    const r = await native().components.softmaxScores(queries, keys);
    const { fused, tensor: reference, fusedAvailable } = r;
    t.equal(fusedAvailable, expectFused, `the fused pass runs where the CPU has AVX2 and FMA (${expectFused})`);
    t.same(fused.shape, [c.heads, c.n, c.tokens], "shape [heads, pixels, tokens]");
    t.same(reference.shape, fused.shape, "both paths agree on the shape");
    const err = relL2(fused.data, reference.data);
    t.ok(err < 1e-5, `relL2 ${err.toExponential(2)} < 1e-5`);
    t.same(r.gradFused.shape, keys.shape, "the keys' gradient has their shape");
    const gradErr = relL2(r.gradFused.data, r.gradTensor.data);
    t.ok(gradErr < 1e-4, `gradient in the keys: relL2 ${gradErr.toExponential(2)} < 1e-4`);
    // Every pixel's softmax sums to 1 per step, so each row of the sum over steps sums to steps.
    let worst = 0;
    for (let h = 0; h < c.heads; h++)
      for (let p = 0; p < c.n; p++) {
        let sum = 0;
        for (let k = 0; k < c.tokens; k++) sum += fused.data[(h * c.n + p) * c.tokens + k];
        worst = Math.max(worst, Math.abs(sum - c.steps));
      }
    t.ok(worst < 1e-4 * c.steps, `rows sum to the step count (worst ${worst.toExponential(2)})`);
  });
}

// The linear pass sums runs of 32768 values of a head's pixels over every step: these shapes
// give one short run, runs that end mid-pixel and a last partial run.
for (const [i, c] of [
  { heads: 2, steps: 3, n: 13, d: 40 },
  { heads: 3, steps: 5, n: 1030, d: 40 },
  { heads: 2, steps: 1, n: 4096, d: 17 },
].entries()) {
  t.test(`linear: queries summed over ${c.steps} steps, ${c.heads} heads × ${c.n} pixels × ${c.d}`, async (t) => {
    const queries = tensor([c.heads, c.steps, c.n, c.d], 2, random(2000 + i));
    const { pass, tensor: reference } = await native().components.summedQueries(queries);
    t.same(pass.shape, [c.heads, c.n, c.d], "shape [heads, pixels, head size]");
    const err = relL2(pass.data, reference.data);
    t.ok(err < 1e-6, `relL2 ${err.toExponential(2)} < 1e-6 against libtorch's sum`);
  });
}

t.test("mismatched shapes are an InvalidArgument error", async (t) => {
  const next = random(7);
  t.throws(() => native().components.softmaxScores(tensor([2, 1, 4, 8], 1, next), tensor([2, 3, 16], 1, next)), {
    code: "ERR_OVAM_INVALID_ARGUMENT",
  });
});
