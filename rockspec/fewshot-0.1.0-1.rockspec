-- The release rockspec. `make rock` packs it with the source archive into
-- dist/fewshot-0.1.0-1.src.rock; `luarocks make` from a checkout uses it as it is.
-- The version is the Makefile's VERSION (and fewshot.core._VERSION): spec/install_spec.lua
-- fails when the file name, the version below or those two disagree.
rockspec_format = "3.0"
package = "fewshot"
version = "0.1.0-1"
source = {
  -- `git archive` of the release commit with the top folder fewshot-0.1.0/, which `make rock`
  -- writes and puts into the source rock beside this file (luarocks looks for the url's base
  -- name there). A release published on a host gives the host's address of that archive here.
  url = "fewshot-0.1.0.tar.gz",
  dir = "fewshot-0.1.0",
}
description = {
  summary = "Few-shot learning on medical images (SPECT first): tensors, autograd, ResNet-18, PRNet in C for Lua 5.4",
  detailed = [[
fewshot reimplements Prototypical Networks with a ResNet-18 backbone and a 2D PRNet for
few-shot tissue classification and one-shot landmark localisation in SPECT images. C owns
every number (float32 tensors, tape autograd, layers, models, optimizers, image and weight
I/O, a SPECT simulator); Lua owns every decision.
]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
-- Outside luarocks: a C and a C++ compiler (gcc, g++), make, pkg-config and the development
-- files of Lua 5.4, OpenBLAS (the OpenMP build is preferred), libpng, zlib and GDCM
-- (libgdcm-dev: DICOM; its headers in /usr/include/gdcm-3.*) (README "Install").
build = {
  type = "make",
  makefile = "Makefile",
  build_target = "all",
  install_target = "install",
  -- The Makefile finds Lua, OpenBLAS and libpng through pkg-config, GDCM by its include
  -- folder, and sets its own flags (core.so links GDCM and libstdc++).
  install_variables = {
    LIBDIR = "$(LIBDIR)",
    LUADIR = "$(LUADIR)",
  },
}
