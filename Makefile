# ember: build, test, run.
#
#   make            ember, the guest kernel, the test guest and the rootfs
#   make deps       install the Debian packages ember needs (needs root)
#   make run        boot the demo Linux microVM (installs and builds first)
#   make test       unit tests, fuzz smoke runs, integration tests, a short soak,
#                   each benchmark once (small)
#   make SAN=1 test the same with ASan + UBSan
#   make fuzz       run each fuzz target for FUZZ_RUNS inputs (default 1e6)
#   make soak       1000 test-guest boots; one ember through 1000 pause/snapshot/
#                   resume cycles with drive swaps and 8000 API connections (4 at
#                   once in each); 1000 restores; 20 times 16 restores at once.
#                   Fails if a run fails or ember's open files, threads or RSS
#                   grow (report: build/soak/report.md). make test runs a short
#                   one (50 of each, 16 at once once) and checks that the growth
#                   check fails on an ember made to leak
#   make bench      every benchmark, ember next to QEMU microvm, then the table of
#                   headline numbers and the plots (benchmarks/results/latest.md, *.png)

CC      ?= gcc
SAN     ?= 0
BUILD   := build
# Sanitized objects live apart so the two builds never mix.
OBJ     := $(if $(filter 1,$(SAN)),$(BUILD)/san,$(BUILD)/obj)
EMBER   := $(OBJ)/ember
JAILER  := $(OBJ)/ember-jailer
UFFD    := $(OBJ)/ember-uffd
# ember with test-only hooks (--test-forbidden-syscall, --test-seccomp-trace, --test-api-timeout-ms); never installed.
EMBER_TEST := $(OBJ)/ember-test

PKGS    := libcjson liburing libseccomp libcap-ng
# Debug info as DWARF 4 (.debug_ranges) with the call frame information
# also in .debug_frame (gcc writes it itself, not through .cfi directives,
# next to the .eh_frame the unwinder needs): the sections Firecracker's
# release .debug files carry, which its tests check for.
CFLAGS  := -std=c11 -D_GNU_SOURCE -O2 -gdwarf-4 -fno-dwarf2-cfi-asm -fno-strict-aliasing \
           -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wimplicit-fallthrough -Wformat=2 -Wno-format-nonliteral \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lZydis -lpthread
# Only the libraries a binary uses (ember needs no libseccomp at run time).
LDFLAGS += -Wl,--as-needed
ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

# ember, ember-jailer and ember-uffd are static (static-pie: ASLR stays), so
# a jail needs no libraries and no loader runs at start. Debian ships no
# libcjson.a or libZydis.a: vmm/deps/static-libs.sh builds them from
# Debian's source packages, cached in ~/.cache/ember. ember-test and
# ember-jailer-test are linked the same way; the sanitized binaries (ASan
# needs the dynamic loader), the unit tests and the other test programs
# stay dynamic.
STATIC_DIR  := $(BUILD)/static-libs
STATIC_LIBS := $(STATIC_DIR)/libcjson.a $(STATIC_DIR)/libZydis.a
ifeq ($(SAN),1)
BIN_LDFLAGS := $(LDFLAGS)
BIN_DEPS    :=
BIN_LIBS     = $(LDLIBS)
UFFD_LIBS    = $(shell pkg-config --libs libcjson 2>/dev/null)
else
BIN_LDFLAGS := $(LDFLAGS) -static-pie
BIN_DEPS    := $(STATIC_LIBS)
BIN_LIBS    := $(STATIC_LIBS) -luring -lseccomp -lcap-ng -lpthread
UFFD_LIBS   := $(STATIC_DIR)/libcjson.a
endif

VMM_SRCS := $(wildcard vmm/*.c vmm/boot/*.c vmm/devices/*.c vmm/io/*.c vmm/virtio/*.c vmm/snapshot/*.c vmm/mmds/*.c vmm/migration/*.c api/*.c)
# The seccomp filters, compiled from vmm/seccomp/rules.c at build time.
SECCOMP_GEN := $(OBJ)/seccomp-gen
SECCOMP_FILTERS := $(OBJ)/gen/seccomp_filters.o
# ... and with the trace variants, for ember-test.
SECCOMP_FILTERS_TEST := $(OBJ)/gen/seccomp_filters-test.o
VMM_OBJS := $(patsubst %.c,$(OBJ)/%.o,$(VMM_SRCS)) $(SECCOMP_FILTERS)
LIB_OBJS := $(filter-out $(OBJ)/vmm/main.o,$(VMM_OBJS))
# The function runtime's protocol and host side (api/fn/): the guest's
# ember-agent builds agent_proto.c too.
FN_SRCS := $(wildcard api/fn/*.c)
FN_OBJS := $(filter-out $(OBJ)/api/fn/main.o,$(patsubst %.c,$(OBJ)/%.o,$(FN_SRCS)))
-include $(patsubst %.c,$(OBJ)/%.d,$(FN_SRCS))
# ember-fn, the function runtime's host daemon.
FN := $(BUILD)/ember-fn
JAILER_SRCS := $(wildcard jailer/*.c)
JAILER_OBJS := $(patsubst %.c,$(OBJ)/%.o,$(JAILER_SRCS)) $(OBJ)/vmm/seccomp.o $(OBJ)/vmm/hostfile.o $(SECCOMP_FILTERS)
TEST_HOOK_OBJS := $(OBJ)/vmm/main-test.o $(OBJ)/vmm/seccomp-test.o $(OBJ)/api/server-test.o
# ember-jailer with test-only hooks (--test-after-root); never installed.
JAILER_TEST := $(OBJ)/ember-jailer-test
JAILER_TEST_OBJS := $(filter-out $(OBJ)/jailer/main.o $(OBJ)/jailer/fs.o,$(JAILER_OBJS)) \
                    $(OBJ)/jailer/main-test.o $(OBJ)/jailer/fs-test.o

# ---- Debian packages -------------------------------------------------
DEBS := build-essential pkg-config libcjson-dev liburing-dev libseccomp-dev \
        libcap-ng-dev libcriterion-dev libzydis-dev linux-source-6.1 bc flex bison \
        libelf-dev libssl-dev lz4 cpio busybox-static fakeroot e2fsprogs file \
        musl-tools qemu-system-x86 clang curl iproute2 kmod socat gnuplot-nox strace \
        acpica-tools jq python3

.PHONY: all deps kernel kernel-acpi testvm rootfs run bench bench-smoke test unit integration fuzz fuzz-smoke soak soak-smoke clean
# build/ember, build/ember-jailer and build/ember-uffd, the binaries users
# run, are never sanitized: make SAN=1 builds only the ones in build/san.
USER_BINS := $(BUILD)/ember $(BUILD)/ember-jailer $(BUILD)/ember-uffd
USER_DEBUG := $(addsuffix .debug,$(USER_BINS))
all: $(EMBER) $(JAILER) $(UFFD) $(FN) $(if $(filter 1,$(SAN)),,$(USER_BINS) $(USER_DEBUG)) kernel testvm rootfs

deps:
	@missing=$$(for p in $(DEBS); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		if [ "$$(id -u)" != 0 ]; then SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# ---- ember -----------------------------------------------------------
$(OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(SECCOMP_GEN): $(OBJ)/vmm/seccomp/gen.o $(OBJ)/vmm/seccomp/rules.o
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(shell pkg-config --libs libseccomp 2>/dev/null)

$(OBJ)/gen/seccomp_filters.c: $(SECCOMP_GEN)
	@mkdir -p $(dir $@)
	@echo "  GEN     $@"
	@$< > $@.tmp && mv $@.tmp $@

$(SECCOMP_FILTERS): $(OBJ)/gen/seccomp_filters.c
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) -I. -c $< -o $@

$(SECCOMP_FILTERS_TEST): $(OBJ)/gen/seccomp_filters.c
	@echo "  CC      $< (test hooks)"
	@$(CC) $(CFLAGS) -DEMBER_TEST_HOOKS -I. -c $< -o $@

$(EMBER): $(VMM_OBJS) $(BIN_DEPS)
	@echo "  LD      $@"
	@$(CC) $(BIN_LDFLAGS) -o $@ $(filter %.o,$^) $(BIN_LIBS)

$(JAILER): $(JAILER_OBJS) $(BIN_DEPS)
	@echo "  LD      $@"
	@$(CC) $(BIN_LDFLAGS) -o $@ $(filter %.o,$^) $(BIN_LIBS)

$(STATIC_LIBS) &: vmm/deps/static-libs.sh
	vmm/deps/static-libs.sh $(STATIC_DIR)
	@touch $(STATIC_LIBS)

$(OBJ)/%-test.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $< (test hooks)"
	@$(CC) $(CFLAGS) -DEMBER_TEST_HOOKS -MMD -MP -c $< -o $@

# Linked as the release binaries are, so the tests that run them (seccomp
# traces, jails) see the same start-up.
$(EMBER_TEST): $(filter-out $(OBJ)/vmm/seccomp.o $(OBJ)/api/server.o $(SECCOMP_FILTERS),$(LIB_OBJS)) $(TEST_HOOK_OBJS) $(SECCOMP_FILTERS_TEST) $(BIN_DEPS)
	@echo "  LD      $@"
	@$(CC) $(BIN_LDFLAGS) -o $@ $(filter %.o,$^) $(BIN_LIBS)

$(JAILER_TEST): $(JAILER_TEST_OBJS) $(BIN_DEPS)
	@echo "  LD      $@"
	@$(CC) $(BIN_LDFLAGS) -o $@ $(filter %.o,$^) $(BIN_LIBS)

# ember linked dynamically, as it was before the static build: for
# benchmarks/static.sh, and for the soak's leaking ember (LD_PRELOAD).
$(OBJ)/ember-dynamic: $(VMM_OBJS)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# build/ember, build/ember-jailer and build/ember-uffd are the binaries
# users run; the sanitized ones stay in build/san. As Firecracker ships its
# binaries, each one's debug info is split off into <binary>.debug next to
# it, and the binary keeps its symbol table and a .gnu_debuglink naming
# that file (gdb and addr2line find it there). build/obj/ keeps the
# unsplit binaries.
define user_bin
$(BUILD)/$(1) $(BUILD)/$(1).debug &: $(BUILD)/obj/$(1)
	@mkdir -p $(BUILD)
	objcopy --only-keep-debug $$< $(BUILD)/$(1).debug
	objcopy --strip-debug --add-gnu-debuglink=$(BUILD)/$(1).debug $$< $(BUILD)/$(1)
endef
$(foreach b,ember ember-jailer ember-uffd,$(eval $(call user_bin,$(b))))

# ember-fn: the function runtime's host daemon (api/fn/).
$(FN): $(OBJ)/api/fn/main.o $(FN_OBJS) $(OBJ)/api/http.o
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(shell pkg-config --libs libcjson 2>/dev/null) -lpthread

# ember-uffd: the page-fault handler that serves uffd snapshot restores.
UFFD_OBJS := $(OBJ)/vmm/snapshot/uffd_handler/main.o $(OBJ)/vmm/snapshot/working_set.o \
             $(OBJ)/vmm/snapshot/memfile.o $(OBJ)/vmm/snapshot/snapfile.o $(OBJ)/vmm/snapshot/newfile.o \
             $(OBJ)/vmm/hostfile.o
$(UFFD): $(UFFD_OBJS) $(BIN_DEPS)
	@echo "  LD      $@"
	@$(CC) $(BIN_LDFLAGS) -o $@ $(filter %.o,$^) $(UFFD_LIBS)
-include $(UFFD_OBJS:.o=.d)

ifneq ($(SAN),1)
$(BUILD)/obj/ember: $(VMM_OBJS)
$(BUILD)/obj/ember-jailer: $(JAILER_OBJS)
$(BUILD)/obj/ember-uffd: $(UFFD_OBJS)
endif

-include $(VMM_OBJS:.o=.d) $(JAILER_OBJS:.o=.d) $(TEST_HOOK_OBJS:.o=.d) $(JAILER_TEST_OBJS:.o=.d)

# ---- guest kernel (cached outside the tree, see firmware/kernel/build.sh)
KERNEL_INPUTS := firmware/kernel/build.sh firmware/kernel/ember.config $(wildcard firmware/kernel/patches/*.patch)
kernel: $(BUILD)/bzImage
$(BUILD)/bzImage $(BUILD)/vmlinux: $(KERNEL_INPUTS)
	firmware/kernel/build.sh $(BUILD)
	@touch $(BUILD)/bzImage $(BUILD)/vmlinux
# The same kernel with ACPI on and command-line device discovery off: what
# the tests of ember's ACPI tables boot.
kernel-acpi: $(BUILD)/acpi/bzImage
$(BUILD)/acpi/bzImage $(BUILD)/acpi/vmlinux: $(KERNEL_INPUTS) firmware/kernel/acpi.config
	firmware/kernel/build.sh $(BUILD)/acpi acpi
	@touch $(BUILD)/acpi/bzImage $(BUILD)/acpi/vmlinux

# ---- test guest ------------------------------------------------------
TESTVM_CFLAGS := -std=c11 -O2 -g -ffreestanding -fno-strict-aliasing -fno-pic -fno-pie -fno-stack-protector \
                 -mno-red-zone -mgeneral-regs-only -fno-asynchronous-unwind-tables \
                 -fno-tree-loop-distribute-patterns \
                 -Wall -Wextra -Werror
testvm: $(BUILD)/testvm.elf
TESTVM_SRCS := firmware/testvm/start.S $(wildcard firmware/testvm/*.c)
$(BUILD)/testvm.elf: $(TESTVM_SRCS) firmware/testvm/testvm.h firmware/testvm/testvm.ld
	@mkdir -p $(BUILD)
	gcc $(TESTVM_CFLAGS) -nostdlib -static -no-pie -Wl,-T,firmware/testvm/testvm.ld \
		-Wl,--build-id=none -Wl,-z,noexecstack -Wl,--no-warn-rwx-segments -o $@ $(TESTVM_SRCS)

# ---- rootfs ----------------------------------------------------------
rootfs: $(BUILD)/initramfs.cpio
# Guest programs, static with musl: init is ~50 KB (glibc: ~770 KB), see
# README. musl ships no kernel headers; the system's come after its own.
GUEST_CC := musl-gcc -std=c11 -D_GNU_SOURCE -Os -static -s -Wall -Wextra -Werror \
            -idirafter /usr/include -idirafter /usr/include/x86_64-linux-gnu
$(BUILD)/init: rootfs/init.c
	@mkdir -p $(BUILD)
	$(GUEST_CC) -o $@ $<
$(BUILD)/ember-vsock: rootfs/vsock.c
	@mkdir -p $(BUILD)
	$(GUEST_CC) -o $@ $<
$(BUILD)/ember-agent: rootfs/agent.c api/fn/agent_proto.c api/fn/agent_proto.h
	@mkdir -p $(BUILD)
	$(GUEST_CC) -o $@ rootfs/agent.c api/fn/agent_proto.c
$(BUILD)/initramfs.cpio $(BUILD)/rootfs.ext4: $(BUILD)/init $(BUILD)/ember-vsock $(BUILD)/ember-agent rootfs/build.sh
	rootfs/build.sh $(BUILD) $(BUILD)

# ---- demo --------------------------------------------------------------
$(BUILD)/demo.json: Makefile
	@mkdir -p $(BUILD)
	@printf '%s\n' '{' \
	  '  "boot-source": {' \
	  '    "kernel_image_path": "$(CURDIR)/$(BUILD)/vmlinux",' \
	  '    "initrd_path": "$(CURDIR)/$(BUILD)/initramfs.cpio",' \
	  '    "boot_args": "console=ttyS0 reboot=k panic=1 quiet ember.cmd=\"uname -a; echo cpus: $$(nproc); free -m; echo hello from the ember guest\""' \
	  '  },' \
	  '  "machine-config": { "vcpu_count": 2, "mem_size_mib": 128 }' \
	  '}' > $@

BENCH_ENV := EMBER=$(BUILD)/ember JAILER=$(BUILD)/ember-jailer BUILD=$(BUILD)
bench: $(USER_BINS) $(BUILD)/obj/ember-dynamic $(FN) $(OBJ)/agent-client kernel testvm rootfs
	$(BENCH_ENV) benchmarks/span.sh 20
	$(BENCH_ENV) benchmarks/api.sh 20
	$(BENCH_ENV) benchmarks/boot.sh 20 3
	$(BENCH_ENV) benchmarks/density.sh 5
	$(BENCH_ENV) benchmarks/snapshot.sh 10
	$(BENCH_ENV) benchmarks/memory.sh 5
	$(BENCH_ENV) benchmarks/clones.sh 5
	$(BENCH_ENV) benchmarks/io.sh 10
	$(BENCH_ENV) benchmarks/jailer.sh 5
	$(BENCH_ENV) benchmarks/static.sh 20 3
	FN=$(FN) AGENT_CLIENT=$(OBJ)/agent-client $(BENCH_ENV) benchmarks/invoke.sh 1 2
	$(BENCH_ENV) benchmarks/migrate.sh 5
	benchmarks/report.sh benchmarks/results

# Each benchmark once, small, into build/bench-smoke (the published
# results stay as they are): part of make test so none can rot. Timings
# are not checked.
SMOKE := $(BUILD)/bench-smoke
bench-smoke: $(USER_BINS) $(BUILD)/obj/ember-dynamic $(FN) $(OBJ)/agent-client kernel testvm rootfs
	rm -rf $(SMOKE) && mkdir -p $(SMOKE)
	OUT=$(SMOKE)/span.md $(BENCH_ENV) benchmarks/span.sh 1
	OUT=$(SMOKE)/api.md $(BENCH_ENV) benchmarks/api.sh 1
	OUT=$(SMOKE)/boot.md $(BENCH_ENV) benchmarks/boot.sh 1 0
	OUT=$(SMOKE)/density.md CONCURRENCY="1 2" $(BENCH_ENV) benchmarks/density.sh 1
	OUT=$(SMOKE)/snapshot.md SIZES=128 FILL=1 CONCURRENCY="1 2" CONC_RUNS=1 $(BENCH_ENV) benchmarks/snapshot.sh 1
	OUT=$(SMOKE)/memory.md LOG=$(SMOKE)/memory.log CONFIGS=1x128 DEVICES= $(BENCH_ENV) benchmarks/memory.sh 1
	OUT=$(SMOKE)/clones.md CLONES=2 SETUPS=both FREE_MIB=8 KEEP_MIB=4 RECLAIM_MIB=16 $(BENCH_ENV) benchmarks/clones.sh 1
	OUT=$(SMOKE)/io.md $(BENCH_ENV) benchmarks/io.sh 1
	OUT=$(SMOKE)/jailer.md SIZES="1 2" $(BENCH_ENV) benchmarks/jailer.sh 1
	OUT=$(SMOKE)/static.md $(BENCH_ENV) benchmarks/static.sh 1 0
	OUT=$(SMOKE)/invoke.md CONCURRENCY=2 MIN_SAMPLES=1 PEER_RUNS=1 FN=$(FN) AGENT_CLIENT=$(OBJ)/agent-client \
	  $(BENCH_ENV) benchmarks/invoke.sh 1 1
	OUT=$(SMOKE)/migrate.md SIZES=128 $(BENCH_ENV) benchmarks/migrate.sh 1
	benchmarks/report.sh $(SMOKE)
	@for p in latest.md boot-distribution.png restore-vs-memory.png memory-overhead.png concurrent-starts.png clone-memory.png \
	  invoke-latency.png migration.png; do \
	  test -s $(SMOKE)/$$p || { echo "bench-smoke: $(SMOKE)/$$p was not made"; exit 1; }; done

run: deps
	$(MAKE) all $(BUILD)/demo.json
	$(BUILD)/ember --no-api --config-file $(BUILD)/demo.json --boot-timer

clean:
	rm -rf $(BUILD)

# ---- tests -------------------------------------------------------------
UNIT_SRCS := $(wildcard tests/unit/*.c)
UNIT_OBJS := $(patsubst %.c,$(OBJ)/%.o,$(UNIT_SRCS))
UNIT_BIN  := $(OBJ)/unit-tests
-include $(UNIT_OBJS:.o=.d)

# The soak's growth detector is tested with the unit tests.
$(UNIT_BIN): $(UNIT_OBJS) $(LIB_OBJS) $(FN_OBJS) $(OBJ)/tests/soak/growth.o
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcriterion

unit: $(UNIT_BIN)
	$(UNIT_BIN) --jobs 2

# A test program that restores memory through ember's uffd backend.
UFFD_CLIENT := $(OBJ)/uffd-client
UFFD_CLIENT_OBJS := $(OBJ)/tests/integration/uffd_client.o $(OBJ)/vmm/snapshot/uffd.o $(OBJ)/vmm/snapshot/working_set.o \
                    $(OBJ)/vmm/snapshot/newfile.o $(OBJ)/vmm/hostfile.o
$(UFFD_CLIENT): $(UFFD_CLIENT_OBJS)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^
-include $(OBJ)/tests/integration/uffd_client.d

# One request to a guest's ember-agent through the vsock socket.
AGENT_CLIENT := $(OBJ)/agent-client
$(AGENT_CLIENT): $(OBJ)/tests/integration/agent_client.o $(OBJ)/api/fn/agent_conn.o $(OBJ)/api/fn/agent_proto.o
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^
-include $(OBJ)/tests/integration/agent_client.d

# Runs ember-test --test-seccomp-trace and records what its filters refuse.
SECCOMP_TRACER := $(OBJ)/seccomp-tracer
$(SECCOMP_TRACER): $(OBJ)/tests/integration/seccomp_tracer.o
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(shell pkg-config --libs libseccomp 2>/dev/null)
-include $(OBJ)/tests/integration/seccomp_tracer.d

# Writes seccompiler-bin-format filter files for the --seccomp-filter tests.
SECCOMP_FILE_GEN := $(OBJ)/seccomp-file-gen
$(SECCOMP_FILE_GEN): $(OBJ)/tests/integration/seccomp_file_gen.o
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^
-include $(OBJ)/tests/integration/seccomp_file_gen.d

# Many clients at once on an API socket, every kind of connection.
API_STRESS := $(OBJ)/api-stress
$(API_STRESS): $(OBJ)/tests/integration/api_stress.o
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ -lpthread
-include $(OBJ)/tests/integration/api_stress.d

integration: $(EMBER) $(JAILER) $(EMBER_TEST) $(JAILER_TEST) $(UFFD) $(FN) $(UFFD_CLIENT) $(SECCOMP_TRACER) $(API_STRESS) $(AGENT_CLIENT) \
	     $(SECCOMP_FILE_GEN) $(if $(filter 1,$(SAN)),,$(USER_BINS) $(USER_DEBUG)) kernel kernel-acpi testvm rootfs
	EMBER=$(EMBER) JAILER=$(JAILER) EMBER_TEST=$(EMBER_TEST) JAILER_TEST=$(JAILER_TEST) UFFD=$(UFFD) \
		UFFD_CLIENT=$(UFFD_CLIENT) SECCOMP_TRACER=$(SECCOMP_TRACER) API_STRESS=$(API_STRESS) BUILD=$(BUILD) \
		SECCOMP_FILE_GEN=$(SECCOMP_FILE_GEN) AGENT_CLIENT=$(AGENT_CLIENT) EMBER_FN=$(FN) \
		tests/integration/run.sh

test: deps
	$(MAKE) unit
	$(MAKE) fuzz-smoke
	$(MAKE) integration
	$(MAKE) soak-smoke
	$(if $(filter 1,$(SAN)),@echo "bench-smoke: not under SAN=1 (timings of sanitized code mean nothing)",$(MAKE) bench-smoke)

# ---- soak (tests/soak/run.sh) -------------------------------------------
# The driver samples each ember's open files, threads and memory; the
# leak library (never sanitized: it is preloaded) makes a leaking ember
# for the check's own test, which runs on the release build only.
SOAK_BIN  := $(OBJ)/soak
SOAK_OBJS := $(OBJ)/tests/soak/soak.o $(OBJ)/tests/soak/growth.o $(OBJ)/benchmarks/vmmrun.o
SOAK_LEAK := $(BUILD)/obj/soak-leak.so
$(SOAK_BIN): $(SOAK_OBJS)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^
-include $(SOAK_OBJS:.o=.d)
$(SOAK_LEAK): tests/soak/leak.c
	@mkdir -p $(dir $@)
	@echo "  CC      $< (shared)"
	@$(CC) -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -fPIC -shared -o $@ $< -ldl

SOAK_ENV := EMBER=$(EMBER) SOAK=$(SOAK_BIN) BUILD=$(BUILD) SAN=$(SAN)
soak: $(EMBER) $(SOAK_BIN) testvm
	$(SOAK_ENV) OUT=$(BUILD)/soak tests/soak/run.sh
# The leaking ember is linked dynamically (preloading needs the loader).
soak-smoke: $(EMBER) $(SOAK_BIN) $(if $(filter 1,$(SAN)),,$(SOAK_LEAK) $(OBJ)/ember-dynamic) testvm
	$(SOAK_ENV) OUT=$(BUILD)/soak-smoke BOOTS=50 CYCLES=50 EVERY=5 RESTORES=50 ROUNDS=1 \
		LEAK=$(if $(filter 1,$(SAN)),,$(SOAK_LEAK)) LEAK_EMBER=$(OBJ)/ember-dynamic tests/soak/run.sh

# ---- fuzzing (libFuzzer, clang) ------------------------------------------
# Every target is built with ASan and clang's UBSan, including checks GCC's
# -fsanitize=undefined lacks (float-cast-overflow: a double converted out of
# an integer's range; local-bounds; implicit integer truncations that change
# a value), and every report halts the run. tests/fuzz/run.sh counts a
# non-zero exit, a sanitizer report in the log or fewer inputs than asked
# as a failure.
FUZZ_DIR    := $(BUILD)/fuzz
FUZZ_RUNS   ?= 1000000
FUZZ_SAN    := fuzzer,address,undefined,float-cast-overflow,float-divide-by-zero,local-bounds,implicit-integer-truncation
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer \
               -fsanitize=$(FUZZ_SAN) -fno-sanitize-recover=all \
               $(shell pkg-config --cflags libcjson 2>/dev/null)
FUZZ_LIBS   := -lcjson -lZydis -lpthread
# What every target links, and what single targets link beside it.
FUZZ_COMMON := vmm/log.c vmm/memory.c vmm/emulate.c vmm/config.c vmm/virtio/virtq.c vmm/io/ratelimit.c \
               api/config_json.c api/http.c api/router.c vmm/snapshot/snapfile.c vmm/snapshot/decode.c \
               vmm/snapshot/memfile.c vmm/hostfile.c vmm/boot/cpu_template.c vmm/mmds/mmds.c vmm/mmds/token.c
FUZZ_EXTRA_fuzz_mmio := vmm/bus.c vmm/virtio/mmio.c vmm/virtio/blk.c vmm/virtio/rng.c vmm/virtio/pmem.c \
                        vmm/virtio/balloon.c vmm/virtio/mem.c
FUZZ_EXTRA_fuzz_seccomp_file := vmm/seccomp_file.c
FUZZ_EXTRA_fuzz_mmds_frames := vmm/mmds/stack.c
FUZZ_EXTRA_fuzz_migration_stream := vmm/migration/stream.c
FUZZ_EXTRA_fuzz_agent_proto := api/fn/agent_proto.c
FUZZ_EXTRA_fuzz_agent_stream := api/fn/agent_proto.c
FUZZ_EXTRA_fuzz_fn_request := api/fn/function.c api/fn/agent_conn.c api/fn/agent_proto.c api/fn/vmm.c
# The longest input each target gets (libFuzzer's -max_len); 4096 unless set here.
FUZZ_MAXLEN_fuzz_snapshot     := 32768
FUZZ_MAXLEN_fuzz_mmio         := 16384
FUZZ_MAXLEN_fuzz_state_config := 8192
FUZZ_MAXLEN_fuzz_seccomp_file := 8192
FUZZ_MAXLEN_fuzz_mmds_frames  := 8192

FUZZ_NAMES  := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS   := $(addprefix $(FUZZ_DIR)/,$(FUZZ_NAMES))
fuzz_objs    = $(patsubst %.c,$(FUZZ_DIR)/obj/%.o,$(1))
FUZZ_ALL_OBJS := $(call fuzz_objs,$(FUZZ_COMMON) $(foreach t,$(FUZZ_NAMES),$(FUZZ_EXTRA_$(t))))

# (Makefile too: a change of the sanitizer flags rebuilds them.)
$(FUZZ_DIR)/obj/%.o: %.c Makefile
	@mkdir -p $(dir $@)
	@echo "  CC      $< (fuzz)"
	@clang $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@
-include $(patsubst %.o,%.d,$(FUZZ_ALL_OBJS) $(call fuzz_objs,$(FUZZ_NAMES:%=tests/fuzz/%.c) tests/fuzz/selftest.c))

# One rule for every target: its own file, the common code, its extras.
$(FUZZ_BINS) $(FUZZ_DIR)/selftest: $(FUZZ_DIR)/%: $(FUZZ_DIR)/obj/tests/fuzz/%.o $(FUZZ_ALL_OBJS)
	@echo "  LD      $@"
	@clang $(FUZZ_CFLAGS) -o $@ $< $(call fuzz_objs,$(FUZZ_COMMON) $(FUZZ_EXTRA_$*)) $(FUZZ_LIBS)

# make fuzz: each target for FUZZ_RUNS inputs, one after the other, each
# with its log in build/fuzz/<target>.log; fails if any target failed.
fuzz: $(FUZZ_BINS)
	tests/fuzz/run.sh $(FUZZ_DIR) $(FUZZ_RUNS) $(foreach t,$(FUZZ_NAMES),$(t):$(or $(FUZZ_MAXLEN_$(t)),4096))

# A short run of every target as part of make test, so none can rot; first
# the check that a crash, a leak, a hang or any sanitizer report does fail
# a run.
fuzz-smoke: $(FUZZ_DIR)/selftest
	tests/fuzz/selftest.sh $(FUZZ_DIR)
	$(MAKE) fuzz FUZZ_RUNS=20000
