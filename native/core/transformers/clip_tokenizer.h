// CLIP's byte-level BPE tokenizer (OpenAI simple_tokenizer with Hugging Face call conventions),
// read from a diffusers `tokenizer/` folder (vocab.json + merges.txt).
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace ovam {

class ClipTokenizer {
 public:
  static constexpr int64_t kContextLength = 77;
  // Reads vocab.json, merges.txt and the pad token from special_tokens_map.json /
  // tokenizer_config.json (sd1 pads with <|endoftext|>, sd2 with "!").
  static ClipTokenizer from_folder(const std::string& folder);

  // <|startoftext|> ids… <|endoftext|>, not padded and not truncated. Text clean-up: Unicode NFC,
  // whitespace collapse, lower-case.
  std::vector<int64_t> encode(const std::string& text) const;
  // Padded with pad_id to 77, truncated to 77 keeping the final <|endoftext|> (what the text
  // encoder takes).
  std::vector<int64_t> encode_padded(const std::string& text) const;
  std::vector<int64_t> pad(std::vector<int64_t> ids) const;
  // The vocabulary string of each id ("car</w>" → shown as "car").
  std::string token_text(int64_t id) const;

  int64_t bos_id() const { return bos_; }
  int64_t eos_id() const { return eos_; }
  int64_t pad_id() const { return pad_; }
  size_t vocab_size() const { return decoder_.size(); }

 private:
  // The BPE pieces (vocabulary strings) of one pre-token, given as UTF-8.
  std::vector<std::string> bpe(const std::string& token) const;
  std::unordered_map<std::string, int64_t> encoder_;
  std::vector<std::string> decoder_;
  std::unordered_map<std::string, int64_t> merge_ranks_;  // "a b" -> rank
  int64_t bos_ = 49406, eos_ = 49407, pad_ = 49407, unk_ = 49407;
};

}  // namespace ovam
