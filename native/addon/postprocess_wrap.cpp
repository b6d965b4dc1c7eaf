#include "addon/postprocess_wrap.h"

#include "addon/convert.h"
#include "postprocess/label_maps.h"
#include "util/errors.h"

namespace ovam::addon {

namespace {

std::vector<double> numbers(const Napi::Object& o, const char* key) {
  std::vector<double> out;
  auto v = o.Get(key);
  if (!v.IsArray()) throw_js(o.Env(), code::kInvalidArgument, std::string("labelMaps: options.") + key + " must be an array of numbers");
  auto a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    auto x = a.Get(i);
    if (!x.IsNumber()) throw_js(o.Env(), code::kInvalidArgument, std::string("labelMaps: options.") + key + " must be an array of numbers");
    out.push_back(x.As<Napi::Number>().DoubleValue());
  }
  return out;
}

LabelMapOptions label_options(const Napi::Value& value) {
  if (!value.IsObject()) throw_js(value.Env(), code::kInvalidArgument, "labelMaps: options must be an object");
  auto o = value.As<Napi::Object>();
  LabelMapOptions l;
  l.height = int64_t(get_number(o, "height", 0));
  l.width = int64_t(get_number(o, "width", 0));
  l.interpolation = get_string(o, "interpolation", l.interpolation);
  l.normalize = get_string(o, "normalize", l.normalize);
  l.compare = get_string(o, "compare", l.compare);
  l.thresholds = numbers(o, "thresholds");
  for (double id : numbers(o, "ids")) l.ids.push_back(uint8_t(id));
  l.background = uint8_t(get_number(o, "background", 0));
  if (o.Get("uncertain").IsArray()) {
    auto band = numbers(o, "uncertain");
    if (band.size() == 2) l.uncertain = std::make_pair(band[0], band[1]);
  }
  l.min_area = int64_t(get_number(o, "minArea", 0));
  l.area = get_string(o, "area", l.area);
  return l;
}

Napi::Value LabelMaps(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 2) throw_js(env, code::kInvalidArgument, "labelMaps(maps, options)");
  auto maps = tensor_from_js(info[0], "maps");
  auto options = label_options(info[1]);
  return Job::queue(env, [maps, options]() {
    auto labels = label_maps(maps, options);
    auto histogram = label_histogram(labels);
    return [labels, histogram](Napi::Env env) -> Napi::Value {
      auto out = Napi::Object::New(env);
      out.Set("labels", tensor_to_js(env, labels));
      out.Set("histogram", tensor_to_js(env, histogram));
      return out;
    };
  });
}

}  // namespace

void init_postprocess(Napi::Env env, Napi::Object exports) { exports.Set("labelMaps", Napi::Function::New(env, LabelMaps)); }

}  // namespace ovam::addon
