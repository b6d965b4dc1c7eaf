#include "pipelines/stable_diffusion_xl.h"

#include "util/errors.h"

namespace ovam {

namespace {
// hidden_states[-2]: the output of the second-to-last layer, before the final LayerNorm.
torch::Tensor penultimate(ClipTextModelImpl& encoder, const torch::Tensor& ids) {
  auto states = encoder.hidden_states(ids);
  return states[states.size() - 2];
}
}  // namespace

void StableDiffusionXL::load_components(const std::filesystem::path& root, const LoadOptions& load, const Config& model_index) {
  StableDiffusion::load_components(root, load, model_index);
  tokenizer_2 = ClipTokenizer::from_folder((root / "tokenizer_2").string());
  const auto folder_2 = (root / "text_encoder_2").string();
  text_encoder_2 = ClipTextModelWithProjection(
      std::dynamic_pointer_cast<ClipTextModelWithProjectionImpl>(load_text_encoder(folder_2, load).ptr()));
  if (!text_encoder_2)
    throw Error(code::kConfig, folder_2 + "/config.json: SDXL's second text encoder must be CLIPTextModelWithProjection");
  force_zeros_for_empty_prompt = model_index.get_bool("force_zeros_for_empty_prompt", true);
  const auto& u = unet->config();
  const int64_t widths = text_encoder->config().hidden_size + text_encoder_2->config().hidden_size;
  if (!u.text_time || u.cross_attention_dim != widths ||
      u.projection_class_embeddings_input_dim != text_encoder_2->config().projection_dim + 6 * u.addition_time_embed_dim)
    throw Error(code::kConfig, (root / "unet").string() + "/config.json: an SDXL UNet needs addition_embed_type \"text_time\", "
                               "cross_attention_dim = the encoders' widths (" + std::to_string(widths) +
                               ") and projection_class_embeddings_input_dim = projection_dim + 6 × addition_time_embed_dim");
}

std::pair<torch::Tensor, torch::Tensor> StableDiffusionXL::encode_prompt_pooled(const std::string& text) {
  torch::NoGradGuard no_grad;
  auto ids = torch::tensor(tokenizer.encode_padded(text), torch::kInt64).unsqueeze(0).to(device);
  auto ids_2 = torch::tensor(tokenizer_2.encode_padded(text), torch::kInt64).unsqueeze(0).to(device);
  auto states_2 = text_encoder_2->hidden_states(ids_2);
  auto pooled = text_encoder_2->text_embeds(text_encoder_2->final_layer_norm(states_2.back()), ids_2);
  return {torch::cat({penultimate(*text_encoder, ids), states_2[states_2.size() - 2]}, -1), pooled};
}

torch::Tensor StableDiffusionXL::encode_prompt(const std::string& text) { return encode_prompt_pooled(text).first; }

Conditioning StableDiffusionXL::condition(const GenerateOptions& options, int64_t height, int64_t width, bool guided) {
  auto [context, pooled] = encode_prompt_pooled(options.prompt);
  const double h = double(height), w = double(width);
  auto time_ids = torch::tensor({h, w, 0.0, 0.0, h, w}, torch::kFloat32).reshape({1, 6});
  if (guided) {
    torch::Tensor negative, negative_pooled;
    if (!options.negative_prompt && force_zeros_for_empty_prompt) {
      negative = torch::zeros_like(context);
      negative_pooled = torch::zeros_like(pooled);
    } else {
      std::tie(negative, negative_pooled) = encode_prompt_pooled(options.negative_prompt.value_or(""));
    }
    context = torch::cat({negative, context});
    pooled = torch::cat({negative_pooled, pooled});
    time_ids = torch::cat({time_ids, time_ids});
  }
  return {context, {pooled, time_ids.to(device, dtype)}};
}

torch::Tensor StableDiffusionXL::encode_window(const torch::Tensor& ids) {
  return torch::cat({penultimate(*text_encoder, ids), penultimate(*text_encoder_2, ids)}, -1)[0];
}

}  // namespace ovam
