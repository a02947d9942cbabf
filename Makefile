# luap2p - build, test, demo.
#
# Targets
#   make            build the C core: build/luap2p/core.so
#   make test       install missing packages, build, run every spec (busted,
#                   Lua 5.4); ends with "N passed, N failed"
#   make demo       install missing packages, build, run the local demo network
#   make bench      benchmarks with same-run baselines (not part of test)
#   make bench-peers  luap2p next to js-libp2p, interleaved in one run
#   make embed      build/embed: examples/embed.c, a node run from C
#                   against build/libluap2p.a (no Lua)
#   make hs-allocs  build/hs_allocs: spec/c/hs_allocs.c, counts the heap
#                   allocations the library makes per handshake
#   make readme-config  regenerate README.md's config table from the schema
#                   (lua/luap2p/config.lua); a spec fails when it drifts
#   make sim        a SIM_NODES-node cold start (luap2p sim, about 1.5 min);
#                   prints whether it converged and in how long, writes
#                   build/sim/cold_start/report.html
#   make clean
#   make env        print shell lines that put this checkout's modules and
#                   the luap2p command on the paths: eval "$(make -s env)"
#   make install    copy the module, the Lua files and the command to
#                   INST_LIBDIR, INST_LUADIR, INST_BINDIR (LuaRocks calls
#                   `make` then `make install`: luap2p-scm-1.rockspec)
#
# Variables (override on the command line: make CC=clang)
#   CC          C compiler (default cc)
#   OPT         optimisation and debug flags (default -O2 -g)
#   LUA         Lua 5.4 interpreter used for specs and scripts (default lua5.4)
#   PKG_CONFIG  pkg-config (default pkg-config); finds libuv, libsodium,
#               libmicrohttpd, lua5.4
#   LUA_CFLAGS  where lua.h is (default: pkg-config lua5.4; LuaRocks passes
#               -I$(LUA_INCDIR))
#   DEPS_LIBS   libuv and libsodium link flags (default: pkg-config, else
#               -luv -lsodium)
#   EXTRA_CFLAGS / EXTRA_LDFLAGS  appended (sanitizers, coverage; LuaRocks
#               passes the libuv and libsodium directories it found)
#   INST_LIBDIR / INST_LUADIR / INST_BINDIR  where `make install` copies
#               core.so (as luap2p/core.so), lua/luap2p and scripts/luap2p
#               (default /usr/local/lib/lua/5.4, /usr/local/share/lua/5.4,
#               /usr/local/bin)
#   BUSTED_ARGS extra arguments for busted (e.g. BUSTED_ARGS=spec/frame_spec.lua)
#   SIM_NODES   honest nodes of `make sim` (default 1000)
#   SIM_ARGS    extra arguments for `luap2p sim` (e.g. SIM_ARGS=--seconds=90)
#
# Defines (-D): none required. LP2P_VERSION lives in core/wire/lp2p.h.
#
# Layers: core/wire (pure) and core/net (libuv) make build/libluap2p.a,
# which the Lua module (core/lua), the fuzzers and the benches link.

CC ?= cc
OPT ?= -O2 -g
LUA ?= lua5.4
PKG_CONFIG ?= pkg-config
BUSTED ?= /usr/bin/busted

LUA_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags lua5.4 2>/dev/null)
DEPS_CFLAGS = $(shell $(PKG_CONFIG) --cflags libuv libsodium libmicrohttpd \
                2>/dev/null) $(LUA_CFLAGS)
# libmicrohttpd: headers only; the core dlopen()s it on first use (see
# core/net/http.c for why it is not linked).
DEPS_LIBS ?= $(shell $(PKG_CONFIG) --libs libuv libsodium 2>/dev/null || \
               echo -luv -lsodium) -ldl
INST_LIBDIR ?= /usr/local/lib/lua/5.4
INST_LUADIR ?= /usr/local/share/lua/5.4
INST_BINDIR ?= /usr/local/bin

CFLAGS = $(OPT) -std=c11 -D_GNU_SOURCE -fPIC -fvisibility=hidden \
         -Wall -Wextra -Wshadow -Wno-unused-parameter $(DEPS_CFLAGS) \
         $(EXTRA_CFLAGS)
LDFLAGS = -shared $(EXTRA_LDFLAGS)

WIRE_SRCS = $(wildcard core/wire/*.c)
NET_SRCS = $(wildcard core/net/*.c)
LUA_SRCS = $(wildcard core/lua/*.c)
SRCS = $(WIRE_SRCS) $(NET_SRCS) $(LUA_SRCS)
HDRS = $(wildcard core/*/*.h)
LIB = build/libluap2p.a
LIB_OBJS = $(patsubst core/%.c,build/obj/%.o,$(WIRE_SRCS) $(NET_SRCS))
LUA_OBJS = $(LUA_SRCS:core/%.c=build/obj/%.o)
MODULE = build/luap2p/core.so

export LUA_PATH := $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua;;
export LUA_CPATH := $(CURDIR)/build/?.so;;

SIM_NODES ?= 1000
SIM_ARGS ?=

.PHONY: all deps test demo bench bench-quick bench-peers sim clean readme-config embed env \
        install hs-allocs

all: $(MODULE)

$(MODULE): $(LUA_OBJS) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(LUA_OBJS) $(LIB) $(DEPS_LIBS) -lpthread -lm

$(LIB): $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $(LIB_OBJS)

build/obj/%.o: core/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

deps:
	@scripts/install-deps test

test: deps
	@$(MAKE) --no-print-directory all
	$(LUA) $(BUSTED) $(BUSTED_ARGS)

demo:
	@scripts/install-deps build
	@$(MAKE) --no-print-directory all
	$(LUA) scripts/luap2p demo

bench: deps
	@scripts/install-deps bench
	@$(MAKE) --no-print-directory all
	$(LUA) bench/run.lua

sim: deps
	@$(MAKE) --no-print-directory all
	$(LUA) scripts/luap2p sim examples/sim/cold_start.lua \
	  --nodes $(SIM_NODES) --report build/sim/cold_start $(SIM_ARGS)

bench-quick: deps
	@scripts/install-deps bench
	@$(MAKE) --no-print-directory all
	$(LUA) bench/run.lua --quick

# js-libp2p next to luap2p (bench/peers/): npm installs the pinned
# packages of bench/peers/package.json under build/bench-peers, nowhere
# else; without node and npm the run says it is skipped.
bench-peers: deps
	@scripts/install-deps bench
	@$(MAKE) --no-print-directory all
	@if command -v node >/dev/null && command -v npm >/dev/null; then \
	  mkdir -p build/bench-peers && \
	  cp bench/peers/package.json bench/peers/libp2p.mjs build/bench-peers/ && \
	  (cd build/bench-peers && npm install --no-audit --no-fund \
	    --loglevel=error >/dev/null); \
	fi
	$(LUA) bench/run.lua --peers

EMBED = build/embed

embed: $(EMBED)

$(EMBED): examples/embed.c $(LIB) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(OPT) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow \
	  -Wno-unused-parameter -Icore/net $(DEPS_CFLAGS) $(EXTRA_CFLAGS) \
	  -o $@ examples/embed.c $(LIB) $(DEPS_LIBS) -lpthread -lm

# Allocations are counted by wrapping the allocator of what is linked
# statically (the library): see the file's header.
HS_ALLOCS = build/hs_allocs

hs-allocs: $(HS_ALLOCS)

$(HS_ALLOCS): spec/c/hs_allocs.c $(LIB) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(OPT) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow \
	  -Wno-unused-parameter -Icore/net $(DEPS_CFLAGS) $(EXTRA_CFLAGS) \
	  -o $@ spec/c/hs_allocs.c $(LIB) $(DEPS_LIBS) -lpthread -lm -rdynamic \
	  -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc

# Every Lua file under lua/luap2p keeps its path; the command is copied.
install: $(MODULE)
	install -d $(INST_LIBDIR)/luap2p $(INST_BINDIR)
	install -m 0755 $(MODULE) $(INST_LIBDIR)/luap2p/core.so
	cd lua && find luap2p -name '*.lua' | while read -r f; do \
	  install -D -m 0644 "$$f" "$(INST_LUADIR)/$$f" || exit 1; done
	install -m 0755 scripts/luap2p $(INST_BINDIR)/luap2p

readme-config:
	$(LUA) scripts/readme-config.lua README.md

clean:
	rm -rf build

# Lua finds lua/ and build/ of this checkout from any directory (run
# `make` first for build/luap2p/core.so).
env:
	@echo 'export LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;"'
	@echo 'export LUA_CPATH="$(CURDIR)/build/?.so;;"'
	@echo 'export PATH="$(CURDIR)/scripts:$$PATH"'

# ------------------------------------------------------------ hardening
# Fuzzing, sanitizers and the leak check. Everything builds under
# build/ (build/fuzz, build/asan), so `make clean` removes it.
#
# Targets
#   make fuzz          build the libFuzzer targets (clang) and run each for
#                      FUZZ_SECONDS on fuzz/corpus/<target> (seeds, read
#                      only) + build/fuzz/corpus/<target> (new inputs);
#                      a crash leaves build/fuzz/artifacts/<target>-crash-*
#   make fuzz-smoke    the same, FUZZ_SECONDS=30 (CI)
#   make fuzz-build    only build them: build/fuzz/<target>
#   make sanitize      every spec against the core rebuilt with ASan + UBSan
#                      (+ LeakSanitizer) in build/asan; any report fails
#   make check-leaks   1 000 connect/disconnect cycles between two nodes
#                      (scripts/check-leaks.lua), on the plain build (fails
#                      on VmRSS or Lua heap growth) then on the ASan build
#                      (fails on any LeakSanitizer report at exit)
#
# Variables
#   FUZZ_CC        clang with libFuzzer (default clang)
#   FUZZ_SECONDS   seconds per target for `make fuzz` (default 60)
#   FUZZ_TARGETS   subset to build/run (default: all nine; conn drives
#                  core/net over a socketpair and links libuv)
#   FUZZ_ARGS      extra libFuzzer flags (e.g. -jobs=2 -workers=2)
#   ASAN_CC        compiler of the sanitized core (default $(CC)); its own
#                  libasan is LD_PRELOADed, since lua5.4 is not instrumented
#   LEAK_CYCLES    cycles of `make check-leaks` (default 1000)

FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_ARGS ?=
FUZZ_TARGETS ?= conn_msg handshake chunk message point identity_json \
                admission shell conn
FUZZ_CORE = $(WIRE_SRCS)
FUZZ_LIB = build/fuzz/libwire.a
FUZZ_CFLAGS = -g -O1 -std=c11 -D_GNU_SOURCE -Wall -Wextra \
              -Wno-unused-parameter -fno-omit-frame-pointer \
              -fsanitize=fuzzer,address,undefined \
              -fno-sanitize-recover=undefined \
              $(shell $(PKG_CONFIG) --cflags libsodium libuv 2>/dev/null)
FUZZ_BINS = $(FUZZ_TARGETS:%=build/fuzz/%)

ASAN_CC ?= $(CC)
ASAN_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
             -fno-sanitize-recover=undefined
ASAN_OBJS = $(SRCS:core/%.c=build/asan/obj/%.o)
ASAN_MODULE = build/asan/luap2p/core.so
ASAN_RT = $(shell $(ASAN_CC) -print-file-name=libasan.so)
# The sanitized core is preloaded after libasan so that it stays mapped
# after Lua's dlclose at exit: leak reports then name our functions.
ASAN_ENV = LD_PRELOAD="$(ASAN_RT):$(CURDIR)/$(ASAN_MODULE)" \
  ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0:quarantine_size_mb=16" \
  LSAN_OPTIONS="suppressions=$(CURDIR)/scripts/lsan.supp:print_suppressions=0" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  LUA_CPATH="$(CURDIR)/build/asan/?.so;;" LUAP2P_SANITIZE=1
LEAK_CYCLES ?= 1000

.PHONY: fuzz fuzz-smoke fuzz-build sanitize sanitize-build check-leaks

# The pure layer is compiled once for every target.
$(FUZZ_LIB): $(FUZZ_CORE) $(HDRS)
	@mkdir -p build/fuzz/obj
	cd build/fuzz/obj && $(FUZZ_CC) $(FUZZ_CFLAGS) -c \
	  $(addprefix $(CURDIR)/,$(FUZZ_CORE))
	@rm -f $@
	ar rcs $@ build/fuzz/obj/*.o

build/fuzz/%: fuzz/%.c fuzz/fuzz.h $(FUZZ_LIB)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_LIB) \
	  $(shell $(PKG_CONFIG) --libs libsodium 2>/dev/null) -lm

# The I/O layer (core/net, on libuv) for the targets that drive it.
FUZZ_NET_LIB = build/fuzz/libnet.a
$(FUZZ_NET_LIB): $(NET_SRCS) $(HDRS)
	@mkdir -p build/fuzz/netobj
	cd build/fuzz/netobj && $(FUZZ_CC) $(FUZZ_CFLAGS) -c \
	  $(addprefix $(CURDIR)/,$(NET_SRCS))
	@rm -f $@
	ar rcs $@ build/fuzz/netobj/*.o

build/fuzz/conn: fuzz/conn.c fuzz/fuzz.h $(FUZZ_NET_LIB) $(FUZZ_LIB)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_NET_LIB) $(FUZZ_LIB) \
	  $(shell $(PKG_CONFIG) --libs libuv libsodium 2>/dev/null) \
	  -lpthread -lm

fuzz-build:
	@scripts/install-deps dev
	@$(MAKE) --no-print-directory $(FUZZ_BINS)

fuzz: fuzz-build
	@mkdir -p build/fuzz/artifacts
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p build/fuzz/corpus/$$t; \
	  echo "fuzz $$t: $(FUZZ_SECONDS) s"; \
	  build/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=build/fuzz/artifacts/$$t- $(FUZZ_ARGS) \
	    build/fuzz/corpus/$$t fuzz/corpus/$$t 2>build/fuzz/$$t.log || \
	    { tail -40 build/fuzz/$$t.log; echo "fuzz $$t: FAILED"; exit 1; }; \
	  grep -E "^stat::number_of_executed_units|^Done" build/fuzz/$$t.log; \
	done; echo "fuzz: no crash in $(FUZZ_TARGETS)"

fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=30

build/asan/obj/%.o: core/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(ASAN_CC) $(CFLAGS) $(ASAN_FLAGS) -c -o $@ $<

$(ASAN_MODULE): $(ASAN_OBJS)
	@mkdir -p $(dir $@)
	$(ASAN_CC) -shared -fsanitize=address,undefined -o $@ $(ASAN_OBJS) \
	  $(DEPS_LIBS) -lpthread -lm

sanitize-build:
	@scripts/install-deps test
	@$(MAKE) --no-print-directory $(ASAN_MODULE)

# --cpath: .busted puts build/?.so first; the sanitized core must win.
sanitize: sanitize-build
	$(ASAN_ENV) $(LUA) $(BUSTED) --cpath="build/asan/?.so" $(BUSTED_ARGS)

check-leaks: sanitize-build
	@$(MAKE) --no-print-directory all
	$(LUA) scripts/check-leaks.lua $(LEAK_CYCLES)
	$(ASAN_ENV) $(LUA) scripts/check-leaks.lua $(LEAK_CYCLES)
# ------------------------------------------------------- end hardening
