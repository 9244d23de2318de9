# What `make env` (and deploy/Dockerfile) compile of llama-cpp-python's sdist: CMAKE_ARGS carries
# -DCMAKE_PROJECT_INCLUDE=<this file>, which CMake includes after every project() call (llama-cpp-python's own,
# then llama.cpp's and ggml's). It turns off the two libraries the Python bindings never load for text models:
#   - libllama-common: llama.cpp's C++ tools library (argument parser, chat parsers, HTTP downloader), which
#     llama-cpp-python forces on, and only its install rule ships; about 40 % of the compile;
#   - libmtmd (LLAVA_BUILD): multimodal (image/audio) projectors, loaded only by the llava/mtmd chat handlers,
#     which AITBC does not use; about 12 %.
# libllama, libggml, libggml-base and libggml-cpu are built from the same sources with the same compiler flags
# (GGML_NATIVE etc. untouched), so the models run and answer exactly as before (docs/miner.md, "Set-up time").
# `make env LLAMA_CMAKE_ARGS=` builds the package's full default instead.
set(LLAVA_BUILD OFF CACHE BOOL "llama-cpp-python: build libmtmd (multimodal; not used by AITBC)" FORCE)
set(LLAMA_BUILD_COMMON OFF CACHE BOOL "llama.cpp: build libllama-common (not loaded by the Python bindings)" FORCE)
