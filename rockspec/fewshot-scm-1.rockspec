rockspec_format = "3.0"
package = "fewshot"
version = "scm-1"
source = {
  url = "git+file://.",
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
build = {
  type = "make",
  makefile = "Makefile",
  build_target = "all",
  install_target = "install",
  -- The Makefile finds Lua, OpenBLAS and libpng through pkg-config and sets its own flags.
  install_variables = {
    LIBDIR = "$(LIBDIR)",
    LUADIR = "$(LUADIR)",
  },
}
