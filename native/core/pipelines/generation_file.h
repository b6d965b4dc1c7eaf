// A generation on disk: one safetensors file with the image, the final latents and every stored
// block's queries, and JSON metadata (options, blocks, timesteps) so attribution of the loaded
// generation equals attribution of the one in memory.
#pragma once
#include <string>

#include "pipelines/stable_diffusion.h"

namespace ovam {

// `user_metadata`: a JSON object text kept alongside (the TS layer's own fields).
void save_generation(const std::string& path, const Generation& generation, const std::string& user_metadata);
// Checks that the file's blocks exist in this pipeline's UNet with the same heads and sizes.
Generation load_generation(const std::string& path, StableDiffusion& pipeline, std::string* user_metadata);

}  // namespace ovam
