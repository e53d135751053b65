# yolod build. `make` builds build/yolod; `make test` runs every test.
#
# Library and daemon code targets x86-64-v2 so the binary runs on any such
# CPU; kernel files named *-avx2.c, *-avxvnni.c, *-avx512.c and
# *-avx512vnni.c get their ISA flags and are chosen at run time by CPU
# feature detection.

CC       ?= gcc
BUILD    ?= build
SHARED   ?= $(abspath ../shared)

WARN     := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
BASE     := -std=c17 -D_GNU_SOURCE -g -fopenmp -fno-math-errno -pthread
CFLAGS   ?= -O2
ALLFLAGS := $(BASE) $(WARN) $(CFLAGS) -march=x86-64-v2 -Ilib
KFLAGS   := $(BASE) $(WARN) -O3 -Ilib
AVX2     := -march=x86-64-v3
AVXVNNI  := -march=x86-64-v3 -mavxvnni
AVX512   := -march=x86-64-v4 -mavx512vnni -mprefer-vector-width=512

LIBS     := -ljpeg -lpng -lm -fopenmp -pthread
DLIBS    := -lmicrohttpd -lcjson

LIB_SRC    := $(wildcard lib/*.c)
KERN_SRC   := $(wildcard lib/kernels/*.c)
DAEMON_SRC := $(wildcard daemon/*.c)
TEST_SRC   := $(wildcard tests/unit/test-*.c)

LIB_OBJ    := $(LIB_SRC:%.c=$(BUILD)/%.o) $(KERN_SRC:%.c=$(BUILD)/%.o)
DAEMON_OBJ := $(DAEMON_SRC:%.c=$(BUILD)/%.o)
TEST_BIN   := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)

all: $(BUILD)/yolod

$(BUILD)/libyolod.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	ar rcs $@ $^

$(BUILD)/yolod: $(DAEMON_OBJ) $(BUILD)/libyolod.a
	$(CC) $(LDFLAGS) -o $@ $(DAEMON_OBJ) $(BUILD)/libyolod.a $(DLIBS) $(LIBS)

$(BUILD)/lib/kernels/%-avx512.o: lib/kernels/%-avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(KFLAGS) $(AVX512) -MMD -MP -c -o $@ $<

$(BUILD)/lib/kernels/%-avx512vnni.o: lib/kernels/%-avx512vnni.c
	@mkdir -p $(dir $@)
	$(CC) $(KFLAGS) $(AVX512) -MMD -MP -c -o $@ $<

$(BUILD)/lib/kernels/%-avx2.o: lib/kernels/%-avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(KFLAGS) $(AVX2) -MMD -MP -c -o $@ $<

$(BUILD)/lib/kernels/%-avxvnni.o: lib/kernels/%-avxvnni.c
	@mkdir -p $(dir $@)
	$(CC) $(KFLAGS) $(AVXVNNI) -MMD -MP -c -o $@ $<

$(BUILD)/lib/kernels/%.o: lib/kernels/%.c
	@mkdir -p $(dir $@)
	$(CC) $(KFLAGS) -march=x86-64-v2 -MMD -MP -c -o $@ $<

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c tests/unit/testlib.h $(BUILD)/libyolod.a
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) $(LDFLAGS) -Itests/unit -o $@ $< $(BUILD)/libyolod.a $(DLIBS) $(LIBS)

# The multipart parser is daemon code without libmicrohttpd, tested alone.
$(BUILD)/tests/test-multipart: tests/unit/test-multipart.c tests/unit/testlib.h \
		$(BUILD)/daemon/multipart_parser.o
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) $(LDFLAGS) -Idaemon -Itests/unit -o $@ $< $(BUILD)/daemon/multipart_parser.o

tests: $(TEST_BIN) $(BUILD)/yolod

# Installs missing Debian packages (apt-get; needs root or sudo only then):
# those to build and run the demo, and for test-deps also the test tools.
deps:
	scripts/install-deps.sh

test-deps:
	scripts/install-deps.sh --test

# Unit tests, then integration tests against the real daemon. Needs ../shared
# (or SHARED=DIR); fails loudly without it.
test: test-deps
	$(MAKE) tests
	SHARED=$(SHARED) BUILD=$(BUILD) tests/run-all.sh

# Serves real photos with the real model and prints the answers.
demo: deps
	$(MAKE) $(BUILD)/yolod
	SHARED=$(SHARED) BUILD=$(BUILD) scripts/demo.sh

memcheck: $(BUILD)/yolod
	scripts/install-deps.sh valgrind
	SHARED=$(SHARED) BUILD=$(BUILD) tests/memcheck.sh

# The daemon under valgrind through requests, SIGHUP and SIGTERM (several minutes).
memcheck-serve: $(BUILD)/yolod
	scripts/install-deps.sh valgrind
	SHARED=$(SHARED) BUILD=$(BUILD) tests/memcheck-serve.sh

# libFuzzer target for the multipart parser, with ASan and UBSan; needs clang
# and its compiler-rt (Debian: clang-14, libclang-rt-14-dev). Run it as
# fuzz/fuzz-multipart.c describes.
FUZZ_CC    ?= clang
FUZZ_FLAGS := -std=c17 -D_GNU_SOURCE -g -O1 $(WARN) \
              -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined

$(BUILD)/fuzz/fuzz-multipart: fuzz/fuzz-multipart.c daemon/multipart_parser.c daemon/multipart_parser.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -Idaemon -o $@ fuzz/fuzz-multipart.c daemon/multipart_parser.c

fuzz-multipart: $(BUILD)/fuzz/fuzz-multipart

# The same for the ONNX reader; fuzz/fuzz-onnx.c says how to run it.
$(BUILD)/fuzz/fuzz-onnx: fuzz/fuzz-onnx.c lib/onnx.c lib/protobuf.c lib/util.c lib/onnx.h lib/protobuf.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -Ilib -o $@ fuzz/fuzz-onnx.c lib/onnx.c lib/protobuf.c lib/util.c -lm

fuzz-onnx: $(BUILD)/fuzz/fuzz-onnx

# Benchmarks, recorded in docs/benchmarks.md. `make bench` times yolod against
# ONNX Runtime (npm onnxruntime-node in bench/node_modules) with alternating
# runs and writes a Markdown table to $(BUILD)/bench/results.md; ROUNDS, RUNS,
# THREADS and ROWS override its defaults (see bench/compare.py). `make
# bench-daemon` measures HTTP throughput against the engine alone (DURATION,
# CONFIGS: see bench/daemon-throughput.sh). `make bench-memory` prints the
# resident memory after each step of setting up a daemon's models and sessions.
BENCH_INT8 := $(BUILD)/bench/yolov8n.int8.yolod

$(BUILD)/bench/peak: bench/peak.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(WARN) -O2 -march=x86-64-v2 -o $@ $<

# Made once and kept: delete it to remake it after the int8 format changes.
$(BENCH_INT8): | $(BUILD)/yolod
	@mkdir -p $(dir $@)
	nice -n 19 $(BUILD)/yolod compress $(SHARED)/models/yolov8n.onnx --variant int8 \
	    --calib $(SHARED)/datasets/coco128/images/train2017 -o $@.tmp
	mv $@.tmp $@

# npm writes this file on every install. --ignore-scripts: the package ships
# its CPU binaries, and its install script only downloads what it does not
# bundle, such as the CUDA provider.
bench/node_modules/.package-lock.json: bench/package.json
	command -v npm >/dev/null || scripts/install-deps.sh nodejs npm
	cd bench && npm install --ignore-scripts --no-audit --no-fund

# The int8 file is made only when a row needs it (ROWS empty means every row).
BENCH_NEEDS_INT8 := $(if $(ROWS),$(findstring int8,$(ROWS)),yes)

bench: $(BUILD)/yolod $(BUILD)/bench/peak $(if $(BENCH_NEEDS_INT8),$(BENCH_INT8)) \
       bench/node_modules/.package-lock.json
	SHARED=$(SHARED) BUILD=$(BUILD) bench/compare.py

bench-daemon: $(BUILD)/yolod
	SHARED=$(SHARED) BUILD=$(BUILD) bench/daemon-throughput.sh

$(BUILD)/bench/rss-steps: bench/rss-steps.c $(BUILD)/libyolod.a
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) -o $@ $< $(BUILD)/libyolod.a $(LIBS)

# One worker with all cores, then two workers with one thread each.
bench-memory: $(BUILD)/bench/rss-steps $(BENCH_INT8)
	$(BUILD)/bench/rss-steps $(SHARED)/images/bus.jpg 0 1 $(SHARED)/models/yolov8n.onnx $(BENCH_INT8)
	$(BUILD)/bench/rss-steps $(SHARED)/images/bus.jpg 1 2 $(SHARED)/models/yolov8n.onnx $(BENCH_INT8)

# Installs the binary, the example config and the systemd unit. With a
# PREFIX other than /usr or /usr/local, the config and the unit go under
# PREFIX too, so a trial install leaves /etc alone.
PREFIX  ?= /usr/local
DESTDIR ?=
SYSTEM_PREFIX = $(filter /usr /usr/local,$(PREFIX))
SYSCONFDIR ?= $(if $(SYSTEM_PREFIX),/etc,$(PREFIX)/etc)
UNITDIR ?= $(if $(SYSTEM_PREFIX),/etc/systemd/system,$(PREFIX)/lib/systemd/system)
install: $(BUILD)/yolod
	install -D -m 755 $(BUILD)/yolod $(DESTDIR)$(PREFIX)/bin/yolod
	install -d $(DESTDIR)$(SYSCONFDIR)/yolod
	sed -e 's|/etc/yolod|$(SYSCONFDIR)/yolod|g' conf/yolod.conf \
	    >$(DESTDIR)$(SYSCONFDIR)/yolod/yolod.conf.example
	chmod 644 $(DESTDIR)$(SYSCONFDIR)/yolod/yolod.conf.example
	install -d $(DESTDIR)$(UNITDIR)
	sed -e 's|/usr/local|$(PREFIX)|g' -e 's|/etc/yolod|$(SYSCONFDIR)/yolod|g' \
	    systemd/yolod.service >$(DESTDIR)$(UNITDIR)/yolod.service
	chmod 644 $(DESTDIR)$(UNITDIR)/yolod.service
	install -D -m 644 README.md $(DESTDIR)$(PREFIX)/share/doc/yolod/README.md
	install -D -m 644 -t $(DESTDIR)$(PREFIX)/share/doc/yolod/docs docs/*.md
	install -D -m 644 -t $(DESTDIR)$(PREFIX)/share/doc/yolod/api-docs api-docs/openapi.yaml api-docs/examples.md

clean:
	rm -rf $(BUILD)

.PHONY: all deps test-deps tests test demo memcheck memcheck-serve fuzz-multipart fuzz-onnx bench bench-daemon bench-memory install clean

-include $(LIB_OBJ:.o=.d) $(DAEMON_OBJ:.o=.d)
