// A generation on disk: one safetensors file with the image, the final latents and every stored
// block's queries, and JSON metadata (options, blocks, timesteps) so attribution of the loaded
// generation equals attribution of the one in memory.
#pragma once
#include <string>

#include "pipelines/stable_diffusion.h"

namespace ovam {

// The file's bytes; `user_metadata`: a JSON object text kept alongside (the TS layer's own fields).
std::string encode_generation(const Generation& generation, const std::string& user_metadata);
// Checks every tensor (dtype, shape, finite values) against the metadata and this pipeline's UNet
// (blocks with the same heads and sizes) before use.
Generation load_generation(const std::string& path, StableDiffusion& pipeline, std::string* user_metadata);

}  // namespace ovam
