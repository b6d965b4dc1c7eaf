#include "transformers/clip_tokenizer.h"

#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <array>
#include <filesystem>
#include <limits>
#include <unordered_set>

#include "util/errors.h"
#include "util/input_file.h"
#include "util/json.h"

namespace ovam {

namespace {

namespace fs = std::filesystem;

const std::string kStartOfText = "<|startoftext|>";
const std::string kEndOfText = "<|endoftext|>";
const std::string kEndOfWord = "</w>";
// CLIP reads the first 49152 − 256 − 2 merges of its file (Hugging Face's CLIPTokenizer slices the same).
constexpr size_t kMaxMerges = 49152 - 256 - 2;

std::string to_utf8(const icu::UnicodeString& s) {
  std::string out;
  s.toUTF8String(out);
  return out;
}

// GPT-2's reversible byte → printable character map (bytes_to_unicode): printable Latin-1 bytes
// stand for themselves, the others take U+0100 onwards in byte order.
const std::array<UChar32, 256>& byte_chars() {
  static const std::array<UChar32, 256> table = [] {
    std::array<UChar32, 256> t{};
    UChar32 next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t[b] = printable ? b : next++;
    }
    return t;
  }();
  return table;
}

// The same map as UTF-8 strings: a BPE symbol starts as one of these.
const std::array<std::string, 256>& byte_symbols() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    for (int b = 0; b < 256; ++b) t[b] = to_utf8(icu::UnicodeString(byte_chars()[b]));
    return t;
  }();
  return table;
}

std::vector<UChar32> code_points(const icu::UnicodeString& s) {
  std::vector<UChar32> out;
  for (int32_t i = 0; i < s.length(); i += U16_LENGTH(s.char32At(i))) out.push_back(s.char32At(i));
  return out;
}

// Python's str.isspace (what strip() removes): bidi class WS, B or S, or category Zs.
bool is_python_space(UChar32 c) {
  const auto dir = u_charDirection(c);
  return u_charType(c) == U_SPACE_SEPARATOR || dir == U_WHITE_SPACE_NEUTRAL || dir == U_BLOCK_SEPARATOR ||
         dir == U_SEGMENT_SEPARATOR;
}

// The reference's clean-up: NFC, whitespace_clean (the `regex` module's \s, i.e. White_Space, runs
// become one space, then str.strip()), lower-case (full Unicode mapping, as Python's str.lower()).
std::vector<UChar32> clean_text(const std::string& text) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(status);
  icu::UnicodeString normalized;
  if (U_SUCCESS(status)) normalized = nfc->normalize(icu::UnicodeString::fromUTF8(text), status);
  if (U_FAILURE(status)) throw Error(code::kTokenizer, std::string("Unicode normalisation failed: ") + u_errorName(status));

  icu::UnicodeString collapsed;
  bool in_space = false;
  for (UChar32 c : code_points(normalized)) {
    const bool space = u_isUWhiteSpace(c);
    if (!space) collapsed.append(c);
    else if (!in_space) collapsed.append(UChar32(' '));
    in_space = space;
  }
  collapsed.toLower(icu::Locale::getRoot());
  auto cps = code_points(collapsed);
  size_t begin = 0, end = cps.size();
  while (begin < end && is_python_space(cps[begin])) ++begin;
  while (end > begin && is_python_space(cps[end - 1])) --end;
  return {cps.begin() + begin, cps.begin() + end};
}

// CLIP compiles its pattern with IGNORECASE, and the `regex` module tests a member of a
// case-insensitive class against every case variant of the character.
bool has_category_ignoring_case(UChar32 c, uint32_t mask) {
  for (UChar32 v : {c, u_foldCase(c, U_FOLD_CASE_DEFAULT), u_tolower(c), u_toupper(c), u_totitle(c)})
    if (U_GET_GC_MASK(v) & mask) return true;
  return false;
}
bool is_letter(UChar32 c) { return has_category_ignoring_case(c, U_GC_L_MASK); }
bool is_number(UChar32 c) { return has_category_ignoring_case(c, U_GC_N_MASK); }

// Length of the match of a literal at `pos` (0 if none), compared under simple case folding.
size_t match_literal(const std::vector<UChar32>& text, size_t pos, const std::string& literal) {
  if (pos + literal.size() > text.size()) return 0;
  for (size_t k = 0; k < literal.size(); ++k)
    if (u_foldCase(text[pos + k], U_FOLD_CASE_DEFAULT) != UChar32(literal[k])) return 0;
  return literal.size();
}

// CLIP's pre-tokenising pattern, as findall would apply it:
//   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// The alternatives are tried in order at each position; a position none matches (a space) is skipped.
std::vector<std::string> pre_tokenize(const std::vector<UChar32>& text) {
  static const std::array<std::string, 9> literals{kStartOfText, kEndOfText, "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
  auto run = [&](size_t pos, auto belongs) {
    size_t end = pos;
    while (end < text.size() && belongs(text[end])) ++end;
    return end - pos;
  };
  auto is_other = [](UChar32 c) { return !u_isUWhiteSpace(c) && !is_letter(c) && !is_number(c); };
  std::vector<std::string> tokens;
  for (size_t pos = 0; pos < text.size();) {
    size_t len = 0;
    for (const auto& literal : literals)
      if ((len = match_literal(text, pos, literal))) break;
    if (!len) len = run(pos, is_letter);
    if (!len && is_number(text[pos])) len = 1;
    if (!len) len = run(pos, is_other);
    if (!len) {
      ++pos;
      continue;
    }
    icu::UnicodeString token;
    for (size_t k = pos; k < pos + len; ++k) token.append(text[k]);
    tokens.push_back(to_utf8(token));
    pos += len;
  }
  return tokens;
}

// A special token's string from a tokenizer file: a plain string or an AddedToken object.
std::string special_token(const Json& file, const std::string& key, const std::string& fallback) {
  if (!file.contains(key) || file[key].is_null()) return fallback;
  const Json& v = file[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return fallback;
}

}  // namespace

ClipTokenizer ClipTokenizer::from_folder(const std::string& folder) {
  const fs::path dir(folder);
  if (!fs::is_directory(dir)) throw Error(code::kNotFound, folder + ": no such tokenizer folder");
  ClipTokenizer tok;

  const fs::path vocab_file = dir / "vocab.json";
  const Json vocab = read_json_file(vocab_file.string());
  // Ids are 0 … size − 1, each once (a sparse id such as 4e8 would size the table to it).
  tok.decoder_.resize(vocab.size());
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<uint64_t>() >= vocab.size())
      throw Error(code::kTokenizer, vocab_file.string() + ": token \"" + token + "\" has id " + id.dump() +
                                        " (expected an integer from 0 to " + std::to_string(vocab.size() - 1) + ")");
    const auto i = id.get<int64_t>();
    if (!tok.decoder_[i].empty())
      throw Error(code::kTokenizer, vocab_file.string() + ": tokens \"" + tok.decoder_[i] + "\" and \"" + token + "\" share id " + std::to_string(i));
    tok.encoder_[token] = i;
    tok.decoder_[i] = token;
  }

  const fs::path merges_file = dir / "merges.txt";
  const std::string merges = read_regular_file(merges_file.string(), uint64_t(64) << 20);
  // Each merge joins two vocabulary symbols into a third; collected to check the file is whole.
  std::unordered_set<std::string> merged;
  size_t number = 0;
  for (size_t begin = 0; begin < merges.size() && tok.merge_ranks_.size() < kMaxMerges;) {
    size_t end = merges.find('\n', begin);
    if (end == std::string::npos) end = merges.size();
    std::string line = merges.substr(begin, end - begin);
    begin = end + 1;
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (number == 1 && line.rfind("#version", 0) == 0)) continue;
    const auto space = line.find(' ');
    if (space == 0 || space == std::string::npos || space + 1 == line.size() || line.find(' ', space + 1) != std::string::npos)
      throw Error(code::kTokenizer, merges_file.string() + " line " + std::to_string(number) + ": \"" + line +
                                        "\" (expected two symbols separated by one space)");
    const std::string first = line.substr(0, space), second = line.substr(space + 1);
    for (const auto& symbol : {first, second, first + second})
      if (!tok.encoder_.count(symbol))
        throw Error(code::kTokenizer, merges_file.string() + " line " + std::to_string(number) + ": \"" + symbol +
                                          "\" is not in vocab.json (the two files do not belong together)");
    merged.insert(first + second);
    // A repeated merge keeps its last rank, as the reference's dict(zip(merges, range(...))) does.
    tok.merge_ranks_[line] = int64_t(tok.merge_ranks_.size());
  }
  // Every vocabulary entry longer than one byte symbol comes from a merge: an empty or cut-off
  // merges.txt would otherwise load and split every word into letters, silently.
  std::unordered_set<std::string> base;
  for (const auto& symbol : byte_symbols()) {
    base.insert(symbol);
    base.insert(symbol + kEndOfWord);
  }
  for (const auto& token : tok.decoder_) {
    const bool special = token.size() >= 4 && token.rfind("<|", 0) == 0 && token.compare(token.size() - 2, 2, "|>") == 0;
    if (!special && !base.count(token) && !merged.count(token))
      throw Error(code::kTokenizer, merges_file.string() + ": no merge makes \"" + token + "\" of vocab.json (" +
                                        std::to_string(tok.merge_ranks_.size()) + " merges read; is the file empty or cut off?)");
  }

  // special_tokens_map.json overrides tokenizer_config.json, as in transformers' from_pretrained.
  Json config = Json::object(), map = Json::object();
  if (fs::is_regular_file(dir / "tokenizer_config.json")) config = read_json_file((dir / "tokenizer_config.json").string());
  if (fs::is_regular_file(dir / "special_tokens_map.json")) map = read_json_file((dir / "special_tokens_map.json").string());
  auto id_of = [&](const std::string& key, const std::string& fallback) {
    const std::string token = special_token(map, key, special_token(config, key, fallback));
    auto it = tok.encoder_.find(token);
    if (it == tok.encoder_.end())
      throw Error(code::kTokenizer, folder + ": " + key + " \"" + token + "\" is not in vocab.json");
    return it->second;
  };
  tok.bos_ = id_of("bos_token", kStartOfText);
  tok.eos_ = id_of("eos_token", kEndOfText);
  tok.unk_ = id_of("unk_token", kEndOfText);
  tok.pad_ = id_of("pad_token", kEndOfText);
  return tok;
}

std::vector<std::string> ClipTokenizer::bpe(const std::string& token) const {
  // The reference's BPE cache starts with the two specials, so they stay whole.
  if (token == kStartOfText || token == kEndOfText) return {token};
  std::vector<std::string> word;
  for (unsigned char b : token) word.push_back(byte_symbols()[b]);
  word.back() += kEndOfWord;
  while (word.size() > 1) {
    int64_t best = std::numeric_limits<int64_t>::max();
    size_t at = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      auto it = merge_ranks_.find(word[i] + " " + word[i + 1]);
      if (it != merge_ranks_.end() && it->second < best) {
        best = it->second;
        at = i;
      }
    }
    if (best == std::numeric_limits<int64_t>::max()) break;
    const std::string first = word[at], second = word[at + 1];
    std::vector<std::string> merged;
    for (size_t i = 0; i < word.size(); ++i) {
      if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
        merged.push_back(first + second);
        ++i;
      } else {
        merged.push_back(word[i]);
      }
    }
    word.swap(merged);
  }
  return word;
}

std::vector<int64_t> ClipTokenizer::encode(const std::string& text) const {
  std::vector<int64_t> ids{bos_};
  for (const auto& token : pre_tokenize(clean_text(text)))
    for (const auto& piece : bpe(token)) {
      auto it = encoder_.find(piece);
      ids.push_back(it == encoder_.end() ? unk_ : it->second);
    }
  ids.push_back(eos_);
  return ids;
}

std::vector<int64_t> ClipTokenizer::pad(std::vector<int64_t> ids) const {
  if (ids.size() > size_t(kContextLength)) {
    ids.resize(kContextLength - 1);
    ids.push_back(eos_);
  }
  ids.resize(kContextLength, pad_);
  return ids;
}

std::vector<int64_t> ClipTokenizer::encode_padded(const std::string& text) const { return pad(encode(text)); }

std::string ClipTokenizer::token_text(int64_t id) const {
  if (id < 0 || size_t(id) >= decoder_.size())
    throw Error(code::kInvalidArgument, "token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                                            std::to_string(decoder_.size() - 1) + ")");
  std::string token = decoder_[id];
  if (token.size() >= kEndOfWord.size() && token.compare(token.size() - kEndOfWord.size(), kEndOfWord.size(), kEndOfWord) == 0)
    token.resize(token.size() - kEndOfWord.size());
  static const std::unordered_map<UChar32, char> char_bytes = [] {
    std::unordered_map<UChar32, char> m;
    for (int b = 0; b < 256; ++b) m[byte_chars()[b]] = char(b);
    return m;
  }();
  std::string bytes;
  for (UChar32 c : code_points(icu::UnicodeString::fromUTF8(token))) {
    auto it = char_bytes.find(c);
    if (it != char_bytes.end()) bytes.push_back(it->second);
  }
  // A token holding part of a character's bytes shows U+FFFD, as Hugging Face's errors="replace".
  return to_utf8(icu::UnicodeString::fromUTF8(bytes));
}

}  // namespace ovam
