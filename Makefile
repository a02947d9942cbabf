# luap2p - build, test, demo.
#
# Targets
#   make            build the C core: build/luap2p/core.so
#   make test       install missing packages, build, run every spec (busted,
#                   Lua 5.4); ends with "N passed, N failed"
#   make demo       install missing packages, build, run the local demo network
#   make bench      benchmarks with same-run baselines (not part of test)
#   make clean
#
# Variables (override on the command line: make CC=clang)
#   CC          C compiler (default cc)
#   OPT         optimisation and debug flags (default -O2 -g)
#   LUA         Lua 5.4 interpreter used for specs and scripts (default lua5.4)
#   PKG_CONFIG  pkg-config (default pkg-config); finds libuv, libsodium, lua5.4
#   EXTRA_CFLAGS / EXTRA_LDFLAGS  appended (sanitizers, coverage)
#   BUSTED_ARGS extra arguments for busted (e.g. BUSTED_ARGS=spec/frame_spec.lua)
#
# Defines (-D): none required. LP2P_VERSION lives in core/lp2p.h.

CC ?= cc
OPT ?= -O2 -g
LUA ?= lua5.4
PKG_CONFIG ?= pkg-config
BUSTED ?= /usr/bin/busted

DEPS_CFLAGS = $(shell $(PKG_CONFIG) --cflags libuv libsodium lua5.4 2>/dev/null)
DEPS_LIBS = $(shell $(PKG_CONFIG) --libs libuv libsodium 2>/dev/null)

CFLAGS = $(OPT) -std=c11 -D_GNU_SOURCE -fPIC -fvisibility=hidden \
         -Wall -Wextra -Wshadow -Wno-unused-parameter $(DEPS_CFLAGS) \
         $(EXTRA_CFLAGS)
LDFLAGS = -shared $(EXTRA_LDFLAGS)

SRCS = $(wildcard core/*.c)
OBJS = $(SRCS:core/%.c=build/obj/%.o)
MODULE = build/luap2p/core.so

export LUA_PATH := $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua;;
export LUA_CPATH := $(CURDIR)/build/?.so;;

.PHONY: all deps test demo bench bench-quick clean

all: $(MODULE)

$(MODULE): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(OBJS) $(DEPS_LIBS) -lpthread -lm

build/obj/%.o: core/%.c core/lp2p.h core/lua_lp2p.h
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
	@$(MAKE) --no-print-directory all
	$(LUA) bench/run.lua

bench-quick: deps
	@$(MAKE) --no-print-directory all
	$(LUA) bench/run.lua --quick

clean:
	rm -rf build
