# yolod build. `make` builds build/yolod; `make test` runs every test.
#
# Library and daemon code targets x86-64-v2 so the binary runs on any such
# CPU; kernel files named *-avx2.c, *-avx512.c and *-avx512vnni.c get their
# ISA flags and are
# chosen at run time by CPU feature detection.

CC       ?= gcc
BUILD    ?= build
SHARED   ?= $(abspath ../shared)

WARN     := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
BASE     := -std=c17 -D_GNU_SOURCE -g -fopenmp -fno-math-errno -pthread
CFLAGS   ?= -O2
ALLFLAGS := $(BASE) $(WARN) $(CFLAGS) -march=x86-64-v2 -Ilib
KFLAGS   := $(BASE) $(WARN) -O3 -Ilib
AVX2     := -march=x86-64-v3
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
	$(CC) -o $@ $(DAEMON_OBJ) $(BUILD)/libyolod.a $(DLIBS) $(LIBS)

$(BUILD)/lib/kernels/%-avx512.o: lib/kernels/%-avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(KFLAGS) $(AVX512) -MMD -MP -c -o $@ $<

$(BUILD)/lib/kernels/%-avx512vnni.o: lib/kernels/%-avx512vnni.c
	@mkdir -p $(dir $@)
	$(CC) $(KFLAGS) $(AVX512) -MMD -MP -c -o $@ $<

$(BUILD)/lib/kernels/%-avx2.o: lib/kernels/%-avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(KFLAGS) $(AVX2) -MMD -MP -c -o $@ $<

$(BUILD)/lib/kernels/%.o: lib/kernels/%.c
	@mkdir -p $(dir $@)
	$(CC) $(KFLAGS) -march=x86-64-v2 -MMD -MP -c -o $@ $<

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c tests/unit/testlib.h $(BUILD)/libyolod.a
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) -Itests/unit -o $@ $< $(BUILD)/libyolod.a $(DLIBS) $(LIBS)

tests: $(TEST_BIN) $(BUILD)/yolod

# Installs missing Debian packages (apt-get; needs root or sudo only then).
deps:
	scripts/install-deps.sh

# Unit tests, then integration tests against the real daemon. Needs ../shared
# (or SHARED=DIR); fails loudly without it.
test: deps
	$(MAKE) tests
	SHARED=$(SHARED) BUILD=$(BUILD) tests/run-all.sh

# Serves real photos with the real model and prints the answers.
demo: deps
	$(MAKE) $(BUILD)/yolod
	SHARED=$(SHARED) BUILD=$(BUILD) scripts/demo.sh

memcheck: $(BUILD)/yolod
	scripts/install-deps.sh valgrind
	SHARED=$(SHARED) BUILD=$(BUILD) tests/memcheck.sh

# Installs the binary, the example config and the systemd unit.
PREFIX  ?= /usr/local
DESTDIR ?=
install: $(BUILD)/yolod
	install -D -m 755 $(BUILD)/yolod $(DESTDIR)$(PREFIX)/bin/yolod
	install -D -m 644 conf/yolod.conf $(DESTDIR)/etc/yolod/yolod.conf.example
	install -D -m 644 systemd/yolod.service $(DESTDIR)/etc/systemd/system/yolod.service

clean:
	rm -rf $(BUILD)

.PHONY: all deps tests test demo memcheck install clean

-include $(LIB_OBJ:.o=.d) $(DAEMON_OBJ:.o=.d)
