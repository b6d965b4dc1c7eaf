{
  "targets": [
    {
      "target_name": "ovam",
      "sources": [
        "native/core/util/json.cpp",
        "native/core/util/nn.cpp",
        "native/core/util/threads.cpp",
        "native/core/util/huge_pages.cpp",
        "native/core/util/input_file.cpp",
        "native/core/util/safetensors.cpp",
        "native/core/util/weights.cpp",
        "native/core/transformers/clip_tokenizer.cpp",
        "native/core/transformers/clip_text_model.cpp",
        "native/core/models/embeddings.cpp",
        "native/core/models/resnet.cpp",
        "native/core/models/attention.cpp",
        "native/core/models/unet_2d_blocks.cpp",
        "native/core/models/unet_2d_condition.cpp",
        "native/core/models/autoencoder_kl.cpp",
        "native/core/schedulers/scheduler.cpp",
        "native/core/schedulers/pndm.cpp",
        "native/core/schedulers/ddim.cpp",
        "native/core/schedulers/euler.cpp",
        "native/core/schedulers/dpm_solver.cpp",
        "native/core/schedulers/lms.cpp",
        "native/core/pipelines/stable_diffusion.cpp",
        "native/core/pipelines/stable_diffusion_img2img.cpp",
        "native/core/pipelines/stable_diffusion_xl.cpp",
        "native/core/pipelines/generation_file.cpp",
        "native/core/pipelines/memory_estimate.cpp",
        "native/core/ovam/attention_store.cpp",
        "native/core/ovam/attribution.cpp",
        "native/core/ovam/softmax_scores.cpp",
        "native/core/ovam/summed_queries.cpp",
        "native/core/ovam/optimize.cpp",
        "native/core/ovam/self_attention_store.cpp",
        "native/core/ovam/refine.cpp",
        "native/core/ovam/text_keys.cpp",
        "native/core/postprocess/permutohedral_lattice.cpp",
        "native/core/postprocess/dense_crf.cpp",
        "native/core/postprocess/label_maps.cpp",
        "native/addon/addon.cpp",
        "native/addon/convert.cpp",
        "native/addon/pipeline_wrap.cpp",
        "native/addon/generation_wrap.cpp",
        "native/addon/components.cpp",
        "native/addon/postprocess_wrap.cpp"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native/core",
        "native",
        "<!(node scripts/libtorch-path.js include)",
        "<!(node scripts/libtorch-path.js include)/torch/csrc/api/include"
      ],
      "libraries": [
        "-L<!(node scripts/libtorch-path.js lib)",
        "-Wl,-rpath,<!(node scripts/libtorch-path.js lib)",
        "-ltorch", "-ltorch_cpu", "-lc10", "-licuuc", "-fopenmp"
      ],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_CPP_EXCEPTIONS_ALL"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O2", "-fopenmp"]
    }
  ]
}
