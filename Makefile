# sdw: one non-recursive Makefile.
#
#   make            build build/sdw (CPU always; CUDA objects when nvcc is found)
#   make deps       install the Debian/Ubuntu packages sdw needs (idempotent)
#   make test       deps + build + every test; ends with "N passed, N failed"
#   make test-cuda  CUDA-vs-CPU parity (prints SKIP and exits 0 without a GPU)
#   make bench      op benchmarks against the OpenBLAS sgemm ceiling
#   make check      test + format check + man page lint
#   make fuzz       run the libFuzzer targets for FUZZ_SECONDS each
#   make install    binary and man pages under PREFIX
#   make clean
#
# Variables: SANITIZE=address,undefined (CPU-only build under build/san),
# CUDA=0 (leave CUDA out), ARCH=native (-march), PREFIX=/usr/local.

.SUFFIXES:
.DELETE_ON_ERROR:
.DEFAULT_GOAL := all
SHELL := /bin/bash

VERSION := 0.1.0
PREFIX ?= /usr/local
ARCH ?= native
CC := gcc
PYTHON ?= python3

BUILD := build
SANITIZE ?=
CUDA_OFF_REASON := nvcc was not found at build time
ifneq ($(strip $(SANITIZE)),)
  BUILD := build/san
  CUDA := 0
  CUDA_OFF_REASON := sanitizer builds are CPU-only
  SAN_FLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
endif

# --- CUDA detection ----------------------------------------------------------
CUDA_HOME ?= /usr/local/cuda
NVCC := $(shell command -v nvcc 2>/dev/null || { test -x $(CUDA_HOME)/bin/nvcc && echo $(CUDA_HOME)/bin/nvcc; })
ifeq ($(strip $(NVCC)),)
  CUDA := 0
endif
CUDA ?= 1
# Fat binary for Ampere, Ada, Hopper and Blackwell (the seed's cards) plus PTX.
CUDA_ARCHS ?= 80 86 89 90 120
CUDA_GENCODE := $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
                -gencode arch=compute_$(lastword $(CUDA_ARCHS)),code=compute_$(lastword $(CUDA_ARCHS))

# --- flags ---------------------------------------------------------------------
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla
CFLAGS := -std=c11 -D_GNU_SOURCE -O3 -march=$(ARCH) -g -fopenmp -fPIC $(WARN) $(SAN_FLAGS) -I. \
          -DSDW_VERSION='"$(VERSION)"'
LDFLAGS := -fopenmp $(SAN_FLAGS)
LDLIBS := -lopenblas -lcjson -lpng -ljpeg -lwebp -lcurl -lzstd -lncursesw -ltinfo -lsixel -lz -lm -lpthread -ldl

ifneq ($(CUDA),1)
  CFLAGS += -DSDW_CUDA_OFF_REASON='"$(CUDA_OFF_REASON)"'
endif
ifeq ($(CUDA),1)
  CFLAGS += -DSDW_HAVE_CUDA=1 -I$(CUDA_HOME)/include
  NVCCFLAGS := -std=c++17 -O3 -I. -I$(CUDA_HOME)/include $(CUDA_GENCODE) \
               -Xcompiler -Wall,-Wextra,-Werror,-fPIC -DSDW_HAVE_CUDA=1 -DSDW_VERSION='"$(VERSION)"'
  CUDA_LIB_DIRS := $(CUDA_HOME)/lib64 $(CUDA_HOME)/lib
  LDFLAGS += $(foreach d,$(CUDA_LIB_DIRS),-L$(d) -Wl,-rpath,$(d))
  LDLIBS += -lcudart_static -lcublasLt -lcublas -lcudnn -lnccl -lrt -lstdc++
endif

# --- sources -------------------------------------------------------------------
LIB_SRCS := $(sort $(wildcard core/base/*.c core/model/*.c core/diffusion/*.c core/train/*.c \
                              core/*.c kernels/cpu/*.c pipeline/*.c tui/*.c))
CLI_SRCS := $(sort $(wildcard core/cli/*.c))
CU_SRCS := $(if $(filter 1,$(CUDA)),$(sort $(wildcard kernels/cuda/*.cu)))
TEST_SRCS := $(sort $(wildcard tests/*.c))
BENCH_SRCS := $(sort $(wildcard bench/*.c))

LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o) $(CU_SRCS:%.cu=$(BUILD)/%.cu.o)
CLI_OBJS := $(CLI_SRCS:%.c=$(BUILD)/%.o)
TEST_OBJS := $(TEST_SRCS:%.c=$(BUILD)/%.o)
BENCH_OBJS := $(BENCH_SRCS:%.c=$(BUILD)/%.o)

# Objects are linked directly (no archive) so every binary gets the same code.
LIBSDW := $(LIB_OBJS)
SDW := $(BUILD)/sdw
TEST_BIN := $(BUILD)/sdw-tests
BENCH_BIN := $(BUILD)/sdw-bench

.PHONY: all deps test test-cuda bench check fuzz install clean format lint-man demo

all: $(SDW)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.cu.o: %.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@


$(SDW): $(CLI_OBJS) $(LIBSDW)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(TEST_BIN): $(TEST_OBJS) $(LIBSDW)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BENCH_BIN): $(BENCH_OBJS) $(LIBSDW)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

-include $(LIB_OBJS:.o=.d) $(CLI_OBJS:.o=.d) $(TEST_OBJS:.o=.d) $(BENCH_OBJS:.o=.d)

# --- installing what the build needs ---------------------------------------------
deps:
	@tools/deps.sh

# The demo: the emoji data set through the pipeline stages, then live
# training in the workbench (sdw-demo(1)); DEMO_ARGS="--headless" for scripts.
demo: deps
	@$(MAKE) --no-print-directory $(SDW)
	@$(SDW) demo $(DEMO_ARGS)

# --- tests -----------------------------------------------------------------------
test: deps
	@tools/test-venv.sh
	@$(MAKE) --no-print-directory $(SDW) $(TEST_BIN)
	@SDW=$(SDW) TEST_BIN=$(TEST_BIN) SANITIZE='$(SANITIZE)' tests/run.sh

test-cuda: deps
	@$(MAKE) --no-print-directory $(SDW)
	@SDW=$(SDW) tests/cuda/run.sh

bench: deps
	@$(MAKE) --no-print-directory $(BENCH_BIN)
	@$(BENCH_BIN) $(BENCH_ARGS)

# --- format and man lint ------------------------------------------------------
FORMAT_SRCS = $(shell git ls-files '*.c' '*.h' '*.cu' 2>/dev/null)
format:
	clang-format -i $(FORMAT_SRCS)

lint-man:
	@tools/lint-man.sh

check: test
	@clang-format --dry-run -Werror $(FORMAT_SRCS) && echo "format: clean"
	@$(MAKE) --no-print-directory lint-man

# --- fuzzing (clang libFuzzer + ASan/UBSan) ------------------------------------------
FUZZ_SECONDS ?= 60
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/*.c))
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=build/fuzz/%)
FUZZ_LIB_SRCS := $(sort $(wildcard core/base/*.c pipeline/parquet_*.c)) pipeline/thrift_compact.c \
                 pipeline/tar.c pipeline/image_codec.c pipeline/image_resize.c
build/fuzz/%: tests/fuzz/%.c $(FUZZ_LIB_SRCS)
	@mkdir -p $(@D)
	clang -std=c11 -D_GNU_SOURCE -O1 -g -I. -fsanitize=fuzzer,address,undefined \
	  -DSDW_VERSION='"$(VERSION)"' $^ -o $@ -lcjson -lpng -ljpeg -lwebp -lz -lm
fuzz: deps $(FUZZ_BINS)
	@for f in $(FUZZ_BINS); do name=$${f##*/}; mkdir -p build/fuzz/corpus-$$name; \
	  echo "fuzz: $$name for $(FUZZ_SECONDS)s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 build/fuzz/corpus-$$name tests/fuzz/seeds/$$name || exit 1; done

# --- install -------------------------------------------------------------------------
install: $(SDW)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 755 $(SDW) $(DESTDIR)$(PREFIX)/bin/sdw
	install -d $(DESTDIR)$(PREFIX)/share/sdw/clip
	install -m 644 assets/clip/* $(DESTDIR)$(PREFIX)/share/sdw/clip
	install -m 644 $(wildcard man/*.1) $(DESTDIR)$(PREFIX)/share/man/man1
	$(if $(wildcard man/*.5),install -m 644 $(wildcard man/*.5) $(DESTDIR)$(PREFIX)/share/man/man5)

clean:
	rm -rf build
