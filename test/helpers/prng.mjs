// Deterministic PRNG (mulberry32) for the fuzz tests, so that a failing mutation can be replayed
// from its seed: prng(seed)() gives numbers in [0, 1).
export function prng(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}
