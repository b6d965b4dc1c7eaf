# libtorch, in this order: $LIBTORCH (an unpacked official archive, CPU or CUDA), a Python torch's
# bundled libtorch when LIBTORCH_USE_PYTORCH=1, the system one (Debian libtorch-dev).
set(_ovam_torch_hints "")
if(DEFINED ENV{LIBTORCH} AND NOT "$ENV{LIBTORCH}" STREQUAL "")
  list(APPEND _ovam_torch_hints "$ENV{LIBTORCH}" "$ENV{LIBTORCH}/share/cmake/Torch")
  set(_ovam_torch_from "LIBTORCH=$ENV{LIBTORCH}")
elseif("$ENV{LIBTORCH_USE_PYTORCH}" STREQUAL "1")
  # The interpreter whose torch to use: LIBTORCH_PYTHON, else python3 on the PATH.
  set(_ovam_python python3)
  if(DEFINED ENV{LIBTORCH_PYTHON} AND NOT "$ENV{LIBTORCH_PYTHON}" STREQUAL "")
    set(_ovam_python "$ENV{LIBTORCH_PYTHON}")
  endif()
  execute_process(COMMAND ${_ovam_python} -c "import torch; print(torch.utils.cmake_prefix_path); print(torch.__version__)"
                  OUTPUT_VARIABLE _ovam_py_out OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _ovam_py_rc)
  if(NOT _ovam_py_rc EQUAL 0)
    message(FATAL_ERROR "ovam: LIBTORCH_USE_PYTORCH=1 but `${_ovam_python} -c 'import torch'` failed. Install PyTorch (pip install torch), name the interpreter that has it with LIBTORCH_PYTHON, or unset LIBTORCH_USE_PYTORCH.")
  endif()
  string(REPLACE "\n" ";" _ovam_py_out "${_ovam_py_out}")
  list(GET _ovam_py_out 0 _ovam_py_prefix)
  list(GET _ovam_py_out 1 _ovam_py_version)
  if(EXISTS "${_ovam_py_prefix}/Torch")
    list(APPEND _ovam_torch_hints "${_ovam_py_prefix}" "${_ovam_py_prefix}/Torch")
    set(_ovam_torch_from "${_ovam_python}'s torch ${_ovam_py_version} at ${_ovam_py_prefix}")
  else()
    # Debian's python3-torch has no CMake config of its own: its C++ side is the system libtorch
    # (libtorch-dev), the same libraries; the versions are compared below.
    set(_ovam_torch_from "the system libtorch, for ${_ovam_python}'s torch ${_ovam_py_version} (no CMake config under ${_ovam_py_prefix})")
  endif()
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
if(_ovam_py_version)
  string(REGEX MATCH "^[0-9]+\\.[0-9]+" _ovam_py_minor "${_ovam_py_version}")
  string(REGEX MATCH "^[0-9]+\\.[0-9]+" _ovam_found_minor "${Torch_VERSION}")
  if(NOT _ovam_py_minor STREQUAL _ovam_found_minor)
    message(FATAL_ERROR "ovam: LIBTORCH_USE_PYTORCH=1 asks for ${_ovam_python}'s torch ${_ovam_py_version}, but the libtorch found is ${Torch_VERSION} (${Torch_DIR}). Install the matching libtorch-dev, or point LIBTORCH at the libtorch to use.")
  endif()
endif()
message(STATUS "ovam: libtorch ${Torch_VERSION} from ${_ovam_torch_from}")
get_filename_component(OVAM_TORCH_LIB_DIR "${TORCH_LIBRARY}" DIRECTORY)
