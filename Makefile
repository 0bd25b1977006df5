# tracsnap - consistent hot snapshots of Trac environments, shown through FUSE.
#
#   make                      build ./tracsnap (into $(O)/, linked to ./tracsnap)
#   make check                unit tests (cmocka) and mount-level tests (pytest, root)
#   make unit                 unit tests only
#   make layers               prove that libfuse is included only in fs/*.c
#   make docmap               doc/design.md's module table names every source file
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

# Each layer is compiled with its own dependencies' flags only (doc/design.md,
# "Layers"): the engine (snapshot/), the daemon's FUSE-free parts (fs/daemon/)
# and the command line (cli/) never see libfuse3's headers, and a FUSE include
# there is a compile error (the poison headers below).  Only fs/*.c and the
# final link use fuse3.
ENGINE_PKGS := sqlite3 libpq libcrypto inih libxxhash
ENGINE_PKG_CFLAGS := $(shell pkg-config --cflags $(ENGINE_PKGS))
ENGINE_PKG_LIBS   := $(shell pkg-config --libs $(ENGINE_PKGS))
FUSE_CFLAGS := $(shell pkg-config --cflags fuse3)
FUSE_LIBS   := $(shell pkg-config --libs fuse3)

CC       ?= cc
CSTD     := -std=gnu11
WARN     := -Wall -Wextra -Werror -Wvla -Wshadow -Wformat=2 -Wno-format-nonliteral
OPT      ?= -O2 -g
CPPFLAGS += -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -DTS_VERSION=\"$(VERSION)\"
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

ALL_CFLAGS  = $(CSTD) $(WARN) $(OPT) $(SANFLAGS) $(CFLAGS) -MMD -MP
ALL_LDFLAGS = $(SANFLAGS) $(LDFLAGS)

ENGINE_SRC := $(sort $(shell find snapshot -name '*.c'))
DAEMON_SRC := $(sort $(wildcard fs/daemon/*.c))
FS_SRC     := $(sort $(wildcard fs/*.c))
CLI_SRC    := $(sort $(wildcard cli/*.c))
UNIT_SRC   := $(sort $(wildcard tests/unit/test_*.c))

ENGINE_OBJ := $(ENGINE_SRC:%.c=$(O)/%.o)
DAEMON_OBJ := $(DAEMON_SRC:%.c=$(O)/%.o)
FS_OBJ     := $(FS_SRC:%.c=$(O)/%.o)
CLI_OBJ    := $(CLI_SRC:%.c=$(O)/%.o)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(O)/tests/%)
# Helpers shared by the unit tests: every tests/unit/*.c that is not a test
# (UNIT_SRC takes test_*.c only), each linked into every test.
TUTIL_SRC  := $(sort $(filter-out tests/unit/test_%.c,$(wildcard tests/unit/*.c)))
TUTIL_OBJ  := $(TUTIL_SRC:tests/unit/%.c=$(O)/tests/%.o)

# Per-layer include paths and flags.  The engine sees only itself; the daemon
# only the engine (its own headers sit beside its sources); fs/ the engine, the
# daemon and fuse3; cli/ the engine and the daemon's entry point (fs/fs.h,
# which must not include fuse.h); the tests what they test.
POISON         := $(O)/poison
NOFUSE         := -I$(POISON)
ENGINE_FLAGS   := $(NOFUSE) -Isnapshot $(ENGINE_PKG_CFLAGS)
DAEMON_FLAGS   := $(NOFUSE) -Isnapshot $(ENGINE_PKG_CFLAGS)
FS_FLAGS       := -Isnapshot -Ifs -DFUSE_USE_VERSION=312 $(FUSE_CFLAGS) $(ENGINE_PKG_CFLAGS)
CLI_FLAGS      := $(NOFUSE) -Isnapshot -Ifs -Icli $(ENGINE_PKG_CFLAGS)
TEST_FLAGS     := $(NOFUSE) -Isnapshot -Ifs $(ENGINE_PKG_CFLAGS) $(shell pkg-config --cflags cmocka)
POISON_HDRS    := fuse.h fuse_lowlevel.h fuse_common.h fuse_opt.h \
                  fuse3/fuse.h fuse3/fuse_lowlevel.h fuse3/fuse_common.h fuse3/fuse_opt.h

.PHONY: all check unit layers docmap mount-tests valgrind valgrind-daemon fuzz install uninstall clean
all: $(O)/tracsnap tracsnap

# ./tracsnap always points at the last build so tests find one binary.
tracsnap: $(O)/tracsnap
	ln -sf $(O)/tracsnap tracsnap

# Headers that stop the build when a FUSE-free layer includes libfuse.
$(POISON)/.stamp:
	@mkdir -p $(POISON)/fuse3
	@for h in $(POISON_HDRS); do \
	  echo '#error "libfuse is for fs/*.c only: this layer is FUSE-free (doc/design.md, Layers)"' \
	    > $(POISON)/$$h; done
	@touch $@

# ar keeps members by file name: two engine sources with one name would
# silently replace each other.
ENGINE_NAMES := $(notdir $(ENGINE_SRC) $(DAEMON_SRC))
ifneq ($(words $(ENGINE_NAMES)),$(words $(sort $(ENGINE_NAMES))))
  $(error two sources under snapshot/ or fs/daemon/ share a file name: $(ENGINE_NAMES))
endif

$(O)/libtsengine.a: $(ENGINE_OBJ)
	rm -f $@
	$(AR) rcs $@ $^

# May be empty while fs/daemon/ holds no sources.
$(O)/libtsdaemon.a: $(DAEMON_OBJ)
	rm -f $@
	$(AR) rcs $@ $^

$(O)/tracsnap: $(CLI_OBJ) $(FS_OBJ) $(O)/libtsdaemon.a $(O)/libtsengine.a
	$(CC) $(ALL_LDFLAGS) -o $@ $(CLI_OBJ) $(FS_OBJ) $(O)/libtsdaemon.a $(O)/libtsengine.a \
	  $(FUSE_LIBS) $(ENGINE_PKG_LIBS) -lpthread

$(O)/snapshot/%.o: snapshot/%.c $(POISON)/.stamp
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ENGINE_FLAGS) $(ALL_CFLAGS) -c -o $@ $<

$(O)/fs/daemon/%.o: fs/daemon/%.c $(POISON)/.stamp
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(DAEMON_FLAGS) $(ALL_CFLAGS) -c -o $@ $<

$(O)/fs/%.o: fs/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(FS_FLAGS) $(ALL_CFLAGS) -c -o $@ $<

$(O)/cli/%.o: cli/%.c $(POISON)/.stamp
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CLI_FLAGS) $(ALL_CFLAGS) -c -o $@ $<

$(TUTIL_OBJ): $(O)/tests/%.o: tests/unit/%.c $(POISON)/.stamp
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(TEST_FLAGS) $(ALL_CFLAGS) -c -o $@ $<

# Unit tests link the engine and the daemon's FUSE-free parts, never libfuse3.
$(O)/tests/%: tests/unit/%.c $(TUTIL_OBJ) $(O)/libtsdaemon.a $(O)/libtsengine.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(TEST_FLAGS) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(TUTIL_OBJ) \
	  $(O)/libtsdaemon.a $(O)/libtsengine.a $(ENGINE_PKG_LIBS) $(shell pkg-config --libs cmocka) -lpthread

# doc/design.md's module table names every source file, and only those.
docmap:
	$(PYTHON) scripts/check-docmap

# The layer rule itself is tested: a FUSE include must fail in every FUSE-free
# layer and compile in fs/.
layers: $(POISON)/.stamp
	@set -e; for f in "$(ENGINE_FLAGS)" "$(DAEMON_FLAGS)" "$(CLI_FLAGS)" "$(TEST_FLAGS)"; do \
	  for h in '<fuse.h>' '<fuse3/fuse.h>' '<fuse_lowlevel.h>'; do \
	    if printf '#include %s\n' "$$h" | $(CC) $(CPPFLAGS) $$f -fsyntax-only -x c - 2>/dev/null; then \
	      echo "make layers: #include $$h compiles with $$f"; exit 1; fi; done; done; \
	printf '#include <fuse.h>\n' | $(CC) $(CPPFLAGS) $(FS_FLAGS) -fsyntax-only -x c -; \
	echo "make layers: FUSE includes fail outside fs/ and compile in fs/"

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

# The tests run $(O)/tracsnap, the binary of this build (the instrumented one
# with SANITIZER=); ./tracsnap is left alone.  TRACSNAP_SANITIZER lets tests
# that cannot run an instrumented binary (valgrind) skip.
mount-tests: $(O)/tracsnap
	TRACSNAP_BIN=$(CURDIR)/$(O)/tracsnap TRACSNAP_SANITIZER=$(SANITIZER) \
	  $(PYTHON) -m pytest -p no:cacheprovider tests/mount $(PYTEST_ARGS)

check: layers docmap unit mount-tests

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
