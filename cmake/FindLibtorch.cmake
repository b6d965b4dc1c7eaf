# libtorch, in this order: $LIBTORCH (an unpacked official archive, CPU or CUDA), a Python torch's
# bundled libtorch when LIBTORCH_USE_PYTORCH=1, the system one (Debian libtorch-dev).
set(_ovam_torch_hints "")
if(DEFINED ENV{LIBTORCH} AND NOT "$ENV{LIBTORCH}" STREQUAL "")
  list(APPEND _ovam_torch_hints "$ENV{LIBTORCH}" "$ENV{LIBTORCH}/share/cmake/Torch")
  set(_ovam_torch_from "LIBTORCH=$ENV{LIBTORCH}")
elseif("$ENV{LIBTORCH_USE_PYTORCH}" STREQUAL "1")
  execute_process(COMMAND python3 -c "import torch; print(torch.utils.cmake_prefix_path)"
                  OUTPUT_VARIABLE _ovam_py_prefix OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _ovam_py_rc)
  if(NOT _ovam_py_rc EQUAL 0)
    message(FATAL_ERROR "ovam: LIBTORCH_USE_PYTORCH=1 but `python3 -c 'import torch'` failed. Install PyTorch (pip install torch) or unset LIBTORCH_USE_PYTORCH.")
  endif()
  list(APPEND _ovam_torch_hints "${_ovam_py_prefix}" "${_ovam_py_prefix}/Torch")
  set(_ovam_torch_from "Python torch at ${_ovam_py_prefix}")
else()
  set(_ovam_torch_from "the system libtorch")
endif()

if(_ovam_torch_hints)
  find_package(Torch QUIET PATHS ${_ovam_torch_hints} NO_DEFAULT_PATH)
else()
  find_package(Torch QUIET)
endif()
if(NOT Torch_FOUND)
  message(FATAL_ERROR "ovam: libtorch not found (looked for ${_ovam_torch_from}). Install one of:\n"
    "  - Debian/Ubuntu: sudo apt-get install libtorch-dev libopenblas0-pthread\n"
    "  - an official libtorch archive from https://pytorch.org (CPU or CUDA), unpacked, with LIBTORCH=/path/to/libtorch\n"
    "  - a Python PyTorch, with LIBTORCH_USE_PYTORCH=1\n"
    "then run npm install again.")
endif()
message(STATUS "ovam: libtorch ${Torch_VERSION} from ${_ovam_torch_from}")
get_filename_component(OVAM_TORCH_LIB_DIR "${TORCH_LIBRARY}" DIRECTORY)
