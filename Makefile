# tracsnap - consistent hot snapshots of Trac environments, shown through FUSE.
#
#   make                      build ./tracsnap (into $(O)/, linked to ./tracsnap)
#   make check                unit tests (cmocka) and mount-level tests (pytest, root)
#   make unit                 unit tests only
#   make SANITIZER=address    (or undefined) instrumented build in build-address/
#   make valgrind             unit tests under valgrind memcheck
#   make valgrind-daemon      a daemon session (mount, snapshot, read, unmount) under memcheck
#   make fuzz SECONDS=60      build the libFuzzer targets (clang) and run each SECONDS
#   make install PREFIX=/usr/local DESTDIR=   binary, man page, and the mount(8)
#                             helper /sbin/mount.fuse.tracsnap (MOUNT_HELPER_DIR)
#   make uninstall

PREFIX    ?= /usr/local
DESTDIR   ?=
BINDIR    ?= $(PREFIX)/bin
MANDIR    ?= $(PREFIX)/share/man
# mount(8) looks for mount.fuse.tracsnap here whatever PREFIX is; empty: no helper
# (then `mount -t fuse.tracsnap` works only with BINDIR on mount(8)'s fixed PATH).
MOUNT_HELPER_DIR ?= /sbin
SANITIZER ?=
PYTHON    ?= /usr/bin/python3
PYTEST_ARGS ?=
SECONDS   ?= 60

# Sanitizer runtime settings for every instrumented program the tests start
# (unit tests, the daemon, CLI commands): leaks count, the first undefined
# behaviour stops the program with a stack trace.  The caller's setting wins.
export ASAN_OPTIONS  ?= detect_leaks=1:print_summary=1
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1

PKGS      := fuse3 sqlite3 libpq libcrypto inih
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS))

CC       ?= cc
CSTD     := -std=gnu11
WARN     := -Wall -Wextra -Werror -Wvla -Wshadow -Wformat=2 -Wno-format-nonliteral
OPT      ?= -O2 -g
CPPFLAGS += -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -DFUSE_USE_VERSION=312 -Isnapshot -Ifs -Icli \
            -DTS_VERSION=\"$(VERSION)\"
VERSION  := 0.1.0

ifeq ($(SANITIZER),)
  O := build
else
  O := build-$(SANITIZER)
  ifeq ($(SANITIZER),address)
    SANFLAGS := -fsanitize=address -fno-omit-frame-pointer
  else ifeq ($(SANITIZER),undefined)
    SANFLAGS := -fsanitize=undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
  else
    $(error SANITIZER must be address or undefined)
  endif
endif

ALL_CFLAGS  = $(CSTD) $(WARN) $(OPT) $(SANFLAGS) $(PKG_CFLAGS) $(CFLAGS) -MMD -MP
ALL_LDFLAGS = $(SANFLAGS) $(LDFLAGS)

ENGINE_SRC := $(sort $(shell find snapshot -name '*.c'))
FS_SRC     := $(sort $(wildcard fs/*.c))
CLI_SRC    := $(sort $(wildcard cli/*.c))
UNIT_SRC   := $(sort $(wildcard tests/unit/test_*.c))

ENGINE_OBJ := $(ENGINE_SRC:%.c=$(O)/%.o)
FS_OBJ     := $(FS_SRC:%.c=$(O)/%.o)
CLI_OBJ    := $(CLI_SRC:%.c=$(O)/%.o)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(O)/tests/%)
# Helpers shared by the unit tests (not a test: UNIT_SRC takes test_*.c only).
TUTIL_OBJ  := $(O)/tests/tutil.o

.PHONY: all check unit mount-tests valgrind valgrind-daemon fuzz install uninstall clean
all: $(O)/tracsnap tracsnap

# ./tracsnap always points at the last build so tests find one binary.
tracsnap: $(O)/tracsnap
	ln -sf $(O)/tracsnap tracsnap

$(O)/libtsengine.a: $(ENGINE_OBJ)
	$(AR) rcs $@ $^

$(O)/tracsnap: $(CLI_OBJ) $(FS_OBJ) $(O)/libtsengine.a
	$(CC) $(ALL_LDFLAGS) -o $@ $(CLI_OBJ) $(FS_OBJ) $(O)/libtsengine.a $(PKG_LIBS) -lpthread

$(O)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c -o $@ $<

$(TUTIL_OBJ): tests/unit/tutil.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c -o $@ $<

$(O)/tests/%: tests/unit/%.c $(TUTIL_OBJ) $(O)/libtsengine.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(TUTIL_OBJ) $(O)/libtsengine.a \
	  $(PKG_LIBS) $(shell pkg-config --libs cmocka) -lpthread

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

# The tests run $(O)/tracsnap, the binary of this build (the instrumented one
# with SANITIZER=); ./tracsnap is left alone.  TRACSNAP_SANITIZER lets tests
# that cannot run an instrumented binary (valgrind) skip.
mount-tests: $(O)/tracsnap
	TRACSNAP_BIN=$(CURDIR)/$(O)/tracsnap TRACSNAP_SANITIZER=$(SANITIZER) \
	  $(PYTHON) -m pytest -p no:cacheprovider tests/mount $(PYTEST_ARGS)

check: unit mount-tests

valgrind: $(UNIT_BIN) all
	@set -e; for t in $(UNIT_BIN); do \
	  valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite $$t; done

# The daemon under memcheck (tests/mount/test_valgrind.py; plain build only).
valgrind-daemon: $(O)/tracsnap
	TRACSNAP_BIN=$(CURDIR)/$(O)/tracsnap TRACSNAP_SANITIZER=$(SANITIZER) \
	  $(PYTHON) -m pytest -p no:cacheprovider tests/mount/test_valgrind.py $(PYTEST_ARGS)

# libFuzzer targets in tests/fuzz/, built with clang into build-fuzz/.
fuzz:
	scripts/fuzz $(SECONDS)

install: $(O)/tracsnap
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 0755 $(O)/tracsnap $(DESTDIR)$(BINDIR)/tracsnap
	install -m 0644 man/tracsnap.1 $(DESTDIR)$(MANDIR)/man1/tracsnap.1
ifneq ($(MOUNT_HELPER_DIR),)
	sed "s|@BINDIR@|$(BINDIR)|" scripts/mount.fuse.tracsnap.in > $(O)/mount.fuse.tracsnap
	install -d $(DESTDIR)$(MOUNT_HELPER_DIR)
	install -m 0755 $(O)/mount.fuse.tracsnap $(DESTDIR)$(MOUNT_HELPER_DIR)/mount.fuse.tracsnap
else
	@echo "make install: no mount helper (MOUNT_HELPER_DIR empty): mount -t fuse.tracsnap" \
	  "and fstab lines work only if $(BINDIR) is /usr/local/bin, /usr/bin or /bin"
endif

# The helper is removed only when it runs this BINDIR's tracsnap: another
# install's helper (another PREFIX) is left to that install.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/tracsnap $(DESTDIR)$(MANDIR)/man1/tracsnap.1
ifneq ($(MOUNT_HELPER_DIR),)
	@h=$(DESTDIR)$(MOUNT_HELPER_DIR)/mount.fuse.tracsnap; \
	if [ -f "$$h" ] && grep -qxF "bindir='$(BINDIR)'" "$$h"; then echo "rm -f $$h"; rm -f "$$h"; \
	elif [ -e "$$h" ]; then echo "make uninstall: $$h left: it belongs to another install"; fi
endif

clean:
	rm -rf build build-address build-undefined build-fuzz tracsnap

-include $(shell find build build-address build-undefined -name '*.d' 2>/dev/null)
