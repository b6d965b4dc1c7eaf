// Runs the fixtures' reference generation (prompt, steps, guidance, the given initial latents)
// through the native pipeline.
import { golden, modelDir, native } from "./golden.mjs";

export const variants = ["sd1", "sd2"];

const pipelines = new Map();
export async function pipelineFor(variant) {
  if (!pipelines.has(variant)) pipelines.set(variant, await native().loadPipeline(modelDir(variant), { device: "cpu", dtype: "float32", threads: 0 }));
  return pipelines.get(variant);
}

export async function referenceGeneration(variant, capture = {}) {
  const { json, tensors } = golden(variant);
  const p = json.pipeline;
  const sd = await pipelineFor(variant);
  const job = sd.generate(
    {
      prompt: p.prompt,
      negativePrompt: p.negative_prompt,
      steps: p.steps,
      guidanceScale: p.guidance_scale,
      width: p.width,
      height: p.height,
      latents: tensors[p.latents],
      scheduler: "",
      capture: { enabled: true, midBlock: false, branch: "unconditional", dtype: "float32", streaming: false, ...capture },
    },
    null,
  );
  return job.promise;
}

// OVAM names blocks "up-2-attentions-1-transformer-1-attn2" (1-based); we keep module paths.
export function ovamBlockName(path) {
  const m = /^(down|up)_blocks\.(\d+)\.attentions\.(\d+)\.transformer_blocks\.(\d+)\.attn2$/.exec(path);
  if (!m) return null;
  return `${m[1]}-${+m[2] + 1}-attentions-${+m[3] + 1}-transformer-${+m[4] + 1}-attn2`;
}
