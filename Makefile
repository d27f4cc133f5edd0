# fewshot - the one build description (luarocks' build.type "make" calls it too).
#
#   make            build fewshot/core.so, the static core library and the embedding example
#   make test       install missing Debian packages, build, run every spec and the C tests of the
#                   core -> "N passed, N failed"
#   make test-c     the C tests alone (tests/c/test_*.c, linked against the static core library)
#   make demo       install missing Debian packages, build, run the main job (examples/demo.lua;
#                   ARGS=--quick for the reduced run, ARGS="--out DIR" elsewhere than out/)
#   make fashion    also install dataset-fashion-mnist, then run examples/fashion_fewshot.lua
#                   (ARGS=--quick, --seeds N, --episodes N, --out DIR); make pretrain-compare:
#                   examples/pretrain_compare.lua (scratch vs Fashion-MNIST vs SPECT pre-training)
#   make check-layers  fails when an area of csrc/core includes a higher one (run by make test)
#   make bench      benchmarks against PyTorch (ms, images/s, peak RSS); BENCH=protonet|prnet|resnet|tensor
#   make sanitize   ASan + UBSan build, then the specs under it
#   make valgrind   memcheck over the core specs (no definite leaks, no invalid access)
#   make tsan       ThreadSanitizer build; the embedding host with 2 and 4 Lua states in threads
#   make fuzz       libFuzzer harnesses of the readers (fuzz/, clang), FUZZ_SECONDS each; make fuzz-smoke: 10 s
#   make install    used by luarocks: LIBDIR receives core.so, LUADIR every .lua under lua/fewshot/
#   make rock       dist/fewshot-VERSION-1.src.rock (from git HEAD) and a rocks-server manifest in dist/
#   make clean

LUA        ?= lua5.4
PKG_CONFIG ?= pkg-config
LUA_PC     ?= lua5.4
CC         ?= cc
CXX        ?= c++

DEB_PACKAGES = lua5.4 liblua5.4-dev libopenblas-dev libopenblas-openmp-dev libpng-dev lua-busted \
               luarocks pkg-config zlib1g-dev make gcc gnuplot-nox g++ libgdcm-dev

# OpenBLAS's OpenMP build shares libgomp's thread pool with our own kernels, so GEMM and our
# loops never spin on the cores at the same time (the pthread build's idle workers would).
# The rpath makes the loader take that variant whatever the system's alternative points to.
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
BLAS_DIR  := /usr/lib/$(MULTIARCH)/openblas-openmp
BLAS_PC   := $(if $(wildcard $(BLAS_DIR)/pkgconfig/openblas.pc),$(BLAS_DIR)/pkgconfig/openblas.pc,openblas)
BLAS_RPATH = -Wl,-rpath,$(BLAS_DIR)
BLAS_LIBS := $(shell $(PKG_CONFIG) --libs $(BLAS_PC) 2>/dev/null) \
             $(if $(wildcard $(BLAS_DIR)/libopenblas.so.0),$(BLAS_RPATH))

PC_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(LUA_PC) $(BLAS_PC) libpng zlib 2>/dev/null)
PC_LIBS   := $(BLAS_LIBS) $(shell $(PKG_CONFIG) --libs libpng zlib 2>/dev/null)

# GDCM (DICOM, csrc/core/io/dicom_gdcm.cpp) ships no .pc file: its headers sit in a versioned
# folder under /usr/include, its libraries in the default path. The C++ runtime comes with it.
GDCM_INC  := $(firstword $(wildcard /usr/include/gdcm-3.*) /usr/include/gdcm-3.0)
GDCM_LIBS  = -lgdcmMSFF -lgdcmDICT -lgdcmDSED -lgdcmCommon -lstdc++

OPT        ?= -O3 -march=native
FS_CFLAGS   = -std=c11 -D_DEFAULT_SOURCE -Wall -Wextra -Wpedantic -Wshadow -fPIC -fopenmp -fno-math-errno \
              -fvisibility=hidden $(OPT) -Icsrc/core -Icsrc/lua $(PC_CFLAGS) $(SAN)
FS_LDLIBS   = $(PC_LIBS) $(GDCM_LIBS) -lm -fopenmp $(SAN)
# The one C++ file of the core: no exceptions cross its extern "C" entry point.
FS_CXXFLAGS = -std=c++17 -Wall -Wextra -fPIC -fvisibility=hidden $(OPT) -Icsrc/core -isystem $(GDCM_INC) $(SAN)

# VARIANT names a separate build (build-san, build-vg) with its own core.so.
BUILD       = build$(VARIANT)
CORE_SRC    = $(sort $(wildcard csrc/core/*/*.c))
LUA_SRC     = $(sort $(wildcard csrc/lua/*.c))
CORE_CXX    = $(sort $(wildcard csrc/core/*/*.cpp))
CORE_OBJ    = $(CORE_SRC:csrc/%.c=$(BUILD)/%.o) $(CORE_CXX:csrc/%.cpp=$(BUILD)/%.o)
LUA_OBJ     = $(LUA_SRC:csrc/%.c=$(BUILD)/%.o)

SO          = $(if $(VARIANT),$(BUILD)/fewshot/core.so,fewshot/core.so)
CORE_LIB    = $(BUILD)/libfewshot_core.a
HOST        = $(BUILD)/embed-host

LUA_ENV     = LUA_PATH="./lua/?.lua;./lua/?/init.lua;./spec/?.lua;;" LUA_CPATH="./?.so;;"
BUSTED      = $(LUA_ENV) $(LUA) /usr/bin/busted

.PHONY: all deps test demo bench sanitize valgrind install clean check-layers tsan

all: $(SO) $(CORE_LIB) $(HOST)

# The data set of examples/fashion_fewshot.lua (make fashion): a package list of its own, so
# that make demo and make test never need it.
FASHION_PACKAGES = dataset-fashion-mnist

# $(call install_missing,PACKAGES): installs the Debian packages of the list that are missing
# (and only then runs apt-get update); quiet when all are there.
install_missing = missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

deps:
	@$(call install_missing,$(DEB_PACKAGES))

.PHONY: deps-fashion fashion pretrain-compare
deps-fashion:
	@$(call install_missing,$(FASHION_PACKAGES))

# The compiler writes each object's header dependencies (-MMD -MP) beside it.
$(BUILD)/%.o: csrc/%.c
	@mkdir -p $(dir $@)
	$(CC) $(FS_CFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.o: csrc/%.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(FS_CXXFLAGS) $(CXXFLAGS) -MMD -MP -c $< -o $@

-include $(CORE_OBJ:.o=.d) $(LUA_OBJ:.o=.d)

$(SO): $(CORE_OBJ) $(LUA_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-z,nodelete -o $@ $^ $(FS_LDLIBS) $(LDFLAGS)

# Rebuilt from scratch: "ar r" keeps the members of renamed or deleted sources.
$(CORE_LIB): $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

# A C program that hosts Lua 5.4 and runs a script using fewshot (how an application embeds it);
# --states N runs N states in N threads.
$(HOST): examples/embed/host.c
	@mkdir -p $(BUILD)
	$(CC) -std=c11 -D_DEFAULT_SOURCE -pthread -Wall -Wextra -Wpedantic $(OPT) $(PC_CFLAGS) $< -o $@ \
	  $$($(PKG_CONFIG) --libs $(LUA_PC)) $(SAN)

# Then the convolution and ResNet specs again on an AVX2 build (build-avx2/), when this CPU
# runs one: the direct convolution kernels have an AVX-512 and an AVX2 form (csrc/core/base/vec.h),
# and -march=native compiles only one of them.
AVX2_FLAGS = VARIANT=-avx2 OPT="-O2 -march=x86-64-v3"
AVX2_SPECS = spec/nn_functional_spec.lua spec/resnet_spec.lua
HAS_AVX2  := $(shell for f in avx2 fma bmi2 f16c movbe; do grep -qw $$f /proc/cpuinfo || exit 0; done; echo yes)
# Each area of csrc/core includes only the areas below it (README "Layout").
check-layers:
	@sh tools/check_layers.sh

# The C tests of the core (tests/c/test_*.c): programs linked against the static core library
# as an embedder links it, no Lua; each prints TAP (tests/c/check.h) with its plan last, so a
# crash leaves a run without a plan, which tools/tap_summary.lua counts as a failure.
C_TEST_SRC  = $(sort $(wildcard tests/c/test_*.c))
C_TESTS     = $(C_TEST_SRC:tests/c/%.c=$(BUILD)/tests/%)

$(BUILD)/tests/%: tests/c/%.c $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(FS_CFLAGS) $(CFLAGS) -MMD -MP $< -o $@ $(CORE_LIB) $(FS_LDLIBS) $(LDFLAGS)

-include $(C_TESTS:=.d)

# Runs each C test in $(1) with a "#" line naming it (and its exit status when not 0).
run_c_tests = for t in $(1); do echo "\# $$t"; ./$$t 2>&1 || echo "\# $$t: exit status $$?"; done

test: deps check-layers
	@$(MAKE) --no-print-directory all $(C_TESTS)
	@$(if $(HAS_AVX2),$(MAKE) --no-print-directory build-avx2/fewshot/core.so $(AVX2_FLAGS) >/dev/null)
	@{ $(BUSTED) -o TAP spec 2>&1; \
	   $(if $(HAS_AVX2),echo "# $(AVX2_SPECS) on the AVX2 build"; \
	     FS_CPATH="./build-avx2/?.so" $(BUSTED) -o TAP $(AVX2_SPECS) 2>&1;) \
	   $(call run_c_tests,$(C_TESTS)); \
	 } | $(LUA) tools/tap_summary.lua $$(( $(if $(HAS_AVX2),2,1) + $(words $(C_TESTS)) ))

.PHONY: test-c
test-c: deps
	@$(MAKE) --no-print-directory $(C_TESTS)
	@$(call run_c_tests,$(C_TESTS)) | $(LUA) tools/tap_summary.lua $(words $(C_TESTS))

demo: deps
	@$(MAKE) --no-print-directory all
	$(LUA_ENV) $(LUA) examples/demo.lua $(ARGS)

# Few-shot on Fashion-MNIST (README "Fashion-MNIST"): installs dataset-fashion-mnist, builds,
# runs examples/fashion_fewshot.lua (ARGS=--quick for the reduced run, ARGS="--seeds 5" ...).
fashion: deps deps-fashion
	@$(MAKE) --no-print-directory all
	$(LUA_ENV) $(LUA) examples/fashion_fewshot.lua $(ARGS)

# Pre-trained vs from scratch on the SPECT tissue task (README "Pre-training"): Fashion-MNIST
# and simulated-SPECT pre-training beside a backbone from scratch.
pretrain-compare: deps deps-fashion
	@$(MAKE) --no-print-directory all
	$(LUA_ENV) $(LUA) examples/pretrain_compare.lua $(ARGS)

# BENCH=protonet | prnet | resnet runs that group of bench/run.lua alone; BENCH=tensor the
# matmul and elementwise figures alone; unset: everything.
BENCH ?= all
bench: deps
	@$(MAKE) --no-print-directory all $(BUILD)/bench-cblas
	@if [ "$(BENCH)" = all ] || [ "$(BENCH)" = tensor ]; then $(LUA_ENV) $(LUA) bench/tensor_bench.lua; fi
	@if [ "$(BENCH)" != tensor ]; then $(LUA_ENV) $(LUA) bench/run.lua --group $(BENCH); fi

$(BUILD)/bench-cblas: bench/cblas_matmul.c
	@mkdir -p $(BUILD)
	$(CC) -std=c11 -D_DEFAULT_SOURCE -O2 $(PC_CFLAGS) $< -o $@ $(PC_LIBS)

# Sanitizers: a separate build in build-san/ (its own core.so, found first on LUA_CPATH); the
# .so is loaded into an uninstrumented lua5.4, so the ASan runtime is preloaded, and libstdc++
# after it: ASan finds the real __cxa_throw at start-up, and the DICOM reader's C++ throws.
SAN_FLAGS = VARIANT=-san SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" OPT="-O1 -g"
SAN_C_TESTS = $(C_TEST_SRC:tests/c/%.c=build-san/tests/%)
sanitize: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory build-san/fewshot/core.so $(SAN_C_TESTS) $(SAN_FLAGS)
	@{ ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CXX) -print-file-name=libstdc++.so)" FS_SANITIZE=1 \
	  FS_CPATH="./build-san/?.so" \
	  $(LUA) /usr/bin/busted -o TAP spec 2>&1; \
	  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1; \
	  $(call run_c_tests,$(SAN_C_TESTS)); \
	} | $(LUA) tools/tap_summary.lua $$(( 1 + $(words $(SAN_C_TESTS)) ))

# valgrind's memcheck on the core specs, with a build valgrind can decode (AVX2, no AVX-512):
# the direct convolution kernels run there in their AVX2 form.
VG_FLAGS = VARIANT=-vg OPT="-O1 -g -march=x86-64-v3"
VG_SPECS = spec/tensor_spec.lua spec/autograd_spec.lua spec/memory_spec.lua spec/nn_functional_spec.lua \
           spec/image_io_spec.lua spec/volume_io_spec.lua spec/data_spec.lua spec/dicom_spec.lua
valgrind: deps
	@$(MAKE) --no-print-directory build-vg/fewshot/core.so $(VG_FLAGS)
	FS_CPATH="./build-vg/?.so" FS_SANITIZE=1 FS_VALGRIND=1 OMP_NUM_THREADS=1 OPENBLAS_CORETYPE=Haswell valgrind --leak-check=full --errors-for-leak-kinds=definite \
	  --error-exitcode=3 $(LUA) /usr/bin/busted -o TAP $(VG_SPECS)

# Every .lua file under lua/fewshot/, subfolders kept: lua/fewshot/data/x.lua is installed as
# LUADIR/fewshot/data/x.lua (module fewshot.data.x).
LIBDIR ?= /usr/local/lib/lua/5.4
LUADIR ?= /usr/local/share/lua/5.4
install: $(SO)
	mkdir -p "$(LIBDIR)/fewshot" "$(LUADIR)/fewshot"
	cp $(SO) "$(LIBDIR)/fewshot/core.so"
	@find lua/fewshot -name '*.lua' | sort | while IFS= read -r f; do \
	  echo "install -D -m 644 $$f $(LUADIR)/$${f#lua/}"; \
	  install -D -m 644 "$$f" "$(LUADIR)/$${f#lua/}" || exit 1; \
	done

# make rock: a source rock and a rocks-server manifest in dist/, offline. The source archive is
# `git archive HEAD` (committed files only, so no build product gets in) and the rockspec is HEAD's
# too; they are zipped as `luarocks pack` lays a source rock out (the rockspec and the archive side
# by side). luarocks pack itself cannot do it: it fetches source.url from inside its temporary
# folder, where a local archive is not. The version lives here; the rockspec's file name and
# fewshot.core._VERSION must agree (spec/install_spec.lua).
VERSION      = 0.1.0
ROCK_VERSION = $(VERSION)-1
ROCKSPEC     = rockspec/fewshot-$(ROCK_VERSION).rockspec
SRC_ROCK     = dist/fewshot-$(ROCK_VERSION).src.rock
.PHONY: rock
rock:
	@git cat-file -e HEAD:$(ROCKSPEC) || { echo "make rock: $(ROCKSPEC) is not committed"; exit 1; }
	@git diff --quiet HEAD -- || echo "make rock: uncommitted changes are left out (the rock packs HEAD)"
	rm -rf dist/pack $(SRC_ROCK) && mkdir -p dist/pack
	git archive --format=tar.gz --prefix=fewshot-$(VERSION)/ -o dist/pack/fewshot-$(VERSION).tar.gz HEAD
	git show HEAD:$(ROCKSPEC) > dist/pack/$(notdir $(ROCKSPEC))
	cd dist/pack && zip -q ../$(notdir $(SRC_ROCK)) $(notdir $(ROCKSPEC)) fewshot-$(VERSION).tar.gz
	rm -rf dist/pack
	luarocks-admin --lua-version=5.4 make-manifest dist
	@echo "wrote $(SRC_ROCK) and dist/manifest (HEAD $$(git rev-parse --short HEAD))"

clean:
	rm -rf build build-san build-vg build-avx2 build-tsan build-fuzz fewshot

# ThreadSanitizer: the core, the binding and the host built with -fsanitize=thread in build-tsan/,
# then examples/embed/train.lua in 2 and 4 Lua states at once (threads of one process); any
# report fails the run (TSAN_OPTIONS exitcode). OMP_NUM_THREADS=1: libgomp is not instrumented,
# so TSan cannot see its barriers and would report every parallel region's hand-over as a race
# (false positives); with one OpenMP thread per state the races left to find are ours, between
# the states' threads. examples/embed/tsan.supp suppresses one false positive (the reason is
# written there). build-tsan/root/ links to lua/ and to build-tsan/fewshot/, so that
# --root build-tsan/root finds the Lua front beside the instrumented core.so.
TSAN_FLAGS = VARIANT=-tsan SAN="-fsanitize=thread" OPT="-O1 -g"
tsan: deps
	@$(MAKE) --no-print-directory build-tsan/fewshot/core.so build-tsan/embed-host $(TSAN_FLAGS)
	@mkdir -p build-tsan/root && ln -sfn ../../lua build-tsan/root/lua && ln -sfn ../fewshot build-tsan/root/fewshot
	@for n in 2 4; do \
	  echo "make tsan: $$n states"; \
	  OMP_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=1 exitcode=66 suppressions=$(CURDIR)/examples/embed/tsan.supp" \
	    ./build-tsan/embed-host --root build-tsan/root --states $$n examples/embed/train.lua 5 || exit 1; \
	done
	@echo "make tsan: 4 states, DICOM decoding (forks) beside convolutions"
	@OMP_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=1 exitcode=66 suppressions=$(CURDIR)/examples/embed/tsan.supp" \
	  ./build-tsan/embed-host --root build-tsan/root --states 4 spec/fixtures/embed_dicom.lua

# ---- fuzzing: libFuzzer harnesses for the readers (fuzz/; needs clang, nothing above does) ----
# make fuzz        builds build-fuzz/fuzz_<reader> (fuzz/fuzz_<reader>.c linked with the core
#                  sources it needs, compiled into build-fuzz/ with the same sanitizers: ASan,
#                  LeakSanitizer, UBSan) and runs each for FUZZ_SECONDS (default 60) with
#                  -rss_limit_mb=2048 -malloc_limit_mb=1024 (fuzz/run.sh); fails on any crash,
#                  leak, UBSan report, out-of-memory or timeout. Seeds come from spec/fixtures and
#                  fuzz/seeds; findings land in build-fuzz/findings/<reader>/.
# make fuzz-smoke  the same, 10 seconds each.
FUZZ_CC       ?= clang
FUZZ_CXX      ?= clang++
FUZZ_SECONDS  ?= 60
FUZZ_READERS   = safetensors npy png nifti interfile idx spec dicom
FUZZ_SAN       = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS    = -std=c11 -D_DEFAULT_SOURCE -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION -Wall -Wextra \
                 -Wpedantic -O1 -g -fopenmp -Icsrc/core $(PC_CFLAGS) $(FUZZ_SAN)
FUZZ_CORE_SRC  = $(sort $(wildcard csrc/core/*/*.c))
FUZZ_CORE_OBJ  = $(FUZZ_CORE_SRC:csrc/%.c=build-fuzz/%.o) $(CORE_CXX:csrc/%.cpp=build-fuzz/%.o)
FUZZ_CXXFLAGS  = -std=c++17 -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION -Wall -Wextra -O1 -g -Icsrc/core \
                 -isystem $(GDCM_INC) $(FUZZ_SAN)
FUZZ_BINS      = $(FUZZ_READERS:%=build-fuzz/fuzz_%)

build-fuzz/%.o: csrc/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

build-fuzz/%.o: csrc/%.cpp
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(FUZZ_CXXFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

build-fuzz/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz.h $(FUZZ_CORE_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -c $< -o $@.o
	$(FUZZ_CXX) $(FUZZ_SAN) -fopenmp -fsanitize=fuzzer $@.o $(FUZZ_CORE_OBJ) -o $@ $(PC_LIBS) $(GDCM_LIBS) -lm

-include $(FUZZ_CORE_OBJ:.o=.d)
.SECONDARY: $(FUZZ_CORE_OBJ)

.PHONY: fuzz fuzz-smoke fuzz-build
fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) sh fuzz/run.sh $(FUZZ_READERS)

fuzz-smoke: fuzz-build
	@FUZZ_SECONDS=10 sh fuzz/run.sh $(FUZZ_READERS)
