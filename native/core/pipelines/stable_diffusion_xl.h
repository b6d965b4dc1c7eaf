// diffusers' StableDiffusionXLPipeline: two CLIP tokenizers and text encoders (the second with a
// projection), the UNet's "text_time" added conditions, and SDXL's defaults. The denoising loop,
// the attention capture and attribution are StableDiffusion's.
#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>

#include "pipelines/stable_diffusion.h"

namespace ovam {

class StableDiffusionXL : public StableDiffusion {
 public:
  // diffusers' encode_prompt for one text: prompt_embeds [1, 77, D1 + D2], both encoders'
  // second-to-last hidden states concatenated, and pooled [1, P], text_encoder_2's projected
  // end-of-text state.
  std::pair<torch::Tensor, torch::Tensor> encode_prompt_pooled(const std::string& text);
  torch::Tensor encode_prompt(const std::string& text) override;
  // [negative; prompt] embeddings and pooled vectors, and the time ids (height, width, 0, 0,
  // height, width): no crop, original size = target size, as diffusers' defaults.
  Conditioning condition(const GenerateOptions& options, int64_t height, int64_t width, bool guided) override;
  double default_guidance_scale() const override { return 5.0; }

  ClipTokenizer tokenizer_2;
  ClipTextModelWithProjection text_encoder_2{nullptr};
  bool force_zeros_for_empty_prompt = true;  // model_index.json: no negative prompt → zero embeddings

 protected:
  void load_components(const std::filesystem::path& root, const LoadOptions& load, const Config& model_index) override;
  // An attribution text through both encoders (the same ids: the tokenizers share their
  // vocabulary and differ only in padding), second-to-last states concatenated: what the UNet sees.
  torch::Tensor encode_window(const torch::Tensor& ids) override;
};

}  // namespace ovam
