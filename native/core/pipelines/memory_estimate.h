// What a generation will ask of memory, estimated from the model's config before it runs, so an
// image size the machine cannot hold is refused up front instead of being granted by overcommit
// and ended by the OOM killer.
#pragma once
#include <cstdint>

#include "pipelines/stable_diffusion.h"

namespace ovam {

struct MemoryEstimate {
  int64_t evaluations = 0;  // UNet evaluations the scheduler will make (steps, + PNDM's extra one)
  double attention = 0;     // the largest self-attention score matrix (UNet or VAE) and its softmax
  double store = 0;         // the captured cross-attention queries and self-attention grids
  double decode = 0;        // the VAE decoder's full-resolution activations
  double total() const { return attention + store + decode; }
};

// Also checks `options.steps` against the scheduler (kInvalidArgument), as generate() would.
MemoryEstimate estimate_generation(StableDiffusion& pipeline, const GenerateOptions& options);

}  // namespace ovam
