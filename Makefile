# Ordo: the two set-up commands are `make run` and `make test`. Both install what is missing
# (Debian packages only), configure with CMake + Ninja and build Release.

BUILD_DIR ?= build
FUZZ_DIR  ?= build-fuzz
SAN_DIR   ?= build-sanitize
DATA_DIR  ?= ./data
JOBS      ?= $(shell nproc)
# Tests mostly wait (for servers, child processes, catch-up): twice as many as cores keeps the
# cores busy (on 2 cores the Release suite took 223 s at -j2, 130 s at -j4).
TEST_JOBS ?= $(shell echo $$(( $$(nproc) * 2 )))
CMAKE_FLAGS ?=

.PHONY: all deps configure build run test test-release test-sanitize bench bench-broker \
        bench-groups bench-cleaner bench-cdc bench-sinks bench-startstop example-mailbox fuzz \
        sim run-cluster jepsen bench-cluster format format-check clean

all: build

deps:
	@scripts/install-deps

$(BUILD_DIR)/build.ninja: CMakeLists.txt | deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

configure: $(BUILD_DIR)/build.ninja

build: deps configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	$(BUILD_DIR)/src/cli/ordo serve --data-dir $(DATA_DIR)

# A three-node cluster on 127.0.0.1 (docs/cluster.md): Kafka 9092-9094, peers 19092-19094,
# admin 9644-9646, data in ./data-cluster; Ctrl-C stops it.
run-cluster: build
	scripts/run-cluster --build-dir $(BUILD_DIR)

# The cluster benchmark alone (about 10 min): RF 3 beside RF 1, one broker and Redis
# appendfsync always; failover, catch-up, metadata (issue 19, BENCHMARKS.md).
bench-cluster: build
	bench/run-cluster-bench --build-dir $(BUILD_DIR)

# A fault-injection run against a real cluster (tests/jepsen/README.md); SEED=N repeats a
# run's faults, JEPSEN_NODES=5 runs five brokers.
JEPSEN_TIME ?= 60
JEPSEN_NEMESIS ?= kill,stop,partition,oneway,loss,delay
JEPSEN_NODES ?= 3
jepsen: build
	ORDO_BIN=$(BUILD_DIR)/src/cli/ordo /usr/bin/python3 -B tests/jepsen/run.py $(if $(SEED),--seed $(SEED)) \
	  --time $(JEPSEN_TIME) --nemesis $(JEPSEN_NEMESIS) --nodes $(JEPSEN_NODES) --out $(BUILD_DIR)/jepsen

# The sources' formatting (.clang-format), then every test twice: the Release build, then an AddressSanitizer + UBSan build (-O1: it compiles
# the ~200 generated protocol files in about half the time of -O2 -g).
test: format-check test-release test-sanitize

test-release: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(TEST_JOBS)

test-sanitize: deps
	cmake -S . -B $(SAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  -DORDO_SANITIZE=ON -DCMAKE_DISABLE_FIND_PACKAGE_benchmark=ON
	cmake --build $(SAN_DIR) -j $(JOBS)
	ctest --test-dir $(SAN_DIR) --output-on-failure -j $(TEST_JOBS)

bench: build
	bench/run-storage-bench --build-dir $(BUILD_DIR)
	cmake --build $(BUILD_DIR) --target nats_bench
	bench/run-broker-bench --build-dir $(BUILD_DIR)
	bench/run-group-bench --build-dir $(BUILD_DIR)
	bench/run-cleaner-bench --build-dir $(BUILD_DIR)
	bench/run-cdc-bench --build-dir $(BUILD_DIR)
	bench/run-sink-bench --build-dir $(BUILD_DIR)
	bench/run-startstop-bench --build-dir $(BUILD_DIR)

# The broker benchmark alone: Ordo beside librdkafka's mock cluster, Redis Streams and NATS
# JetStream (BENCHMARKS.md). nats_bench (Go) is not part of `build`.
bench-broker: build
	cmake --build $(BUILD_DIR) --target nats_bench
	bench/run-broker-bench --build-dir $(BUILD_DIR)

# The consumer-group benchmark alone (about 3 minutes): time to a stable assignment, rebalance
# latency and offset-commit throughput on Ordo and librdkafka's mock cluster, beside fio's
# fdatasync rate (BENCHMARKS.md).
bench-groups: build
	bench/run-group-bench --build-dir $(BUILD_DIR)

# The compaction benchmark alone (about 3 minutes): cleaner throughput beside the disk's limit,
# and acks=-1 produce latency while the cleaner runs, capped and uncapped, vs idle
# (BENCHMARKS.md).
bench-cleaner: build
	bench/run-cleaner-bench --build-dir $(BUILD_DIR)

# The change-capture benchmark alone (about 3 minutes): PostgreSQL -> source -> topic -> table
# view under pgbench inserts, beside pgbench alone and pg_recvlogical (BENCHMARKS.md).
bench-cdc: build
	bench/run-cdc-bench --build-dir $(BUILD_DIR)

# The sink benchmark alone (about 3 minutes): each connect sink's apply rate and lag beside a
# client writing the same store directly (BENCHMARKS.md).
bench-sinks: build
	bench/run-sink-bench --build-dir $(BUILD_DIR)

# The start/stop benchmark alone (about 4 minutes): time to start and to stop with 1,000 and
# 10,000 partitions, and to start after SIGKILL (BENCHMARKS.md).
bench-startstop: build
	bench/run-startstop-bench --build-dir $(BUILD_DIR)

# The mailbox example (examples/mailbox/README.md): PostgreSQL -> the log -> unread counts,
# search and a Redis cache, next to dual writes.
example-mailbox: build
	examples/mailbox/run --build-dir $(BUILD_DIR)

# Coverage-guided fuzzing with libFuzzer (clang 14). FUZZ_TARGET=record_batch FUZZ_SECONDS=60
FUZZ_TARGET  ?= record_batch
FUZZ_SECONDS ?= 60
fuzz: deps
	CXX=clang++-14 cmake -S . -B $(FUZZ_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DORDO_FUZZ=ON
	cmake --build $(FUZZ_DIR) -j $(JOBS) --target fuzz_$(FUZZ_TARGET)
	mkdir -p $(FUZZ_DIR)/corpus-$(FUZZ_TARGET)
	$(FUZZ_DIR)/tests/fuzz/fuzz_$(FUZZ_TARGET) -max_total_time=$(FUZZ_SECONDS) \
	  -artifact_prefix=$(FUZZ_DIR)/ \
	  $(FUZZ_DIR)/corpus-$(FUZZ_TARGET) tests/fuzz/corpus/$(FUZZ_TARGET)

# The deterministic Raft simulator (docs/replication-sim.md). SEED=N replays one seed with a
# trace of every fault, role change, append and acknowledgement (SIM_FLAGS=-vv adds every
# message); SEEDS=N runs seeds FIRST.. FIRST+N-1 (default 100000: long). BROKEN=<variant>
# runs a deliberately broken variant (src/raft/broken.h) instead of the real core.
SEEDS ?= 100000
FIRST ?= 1
SIM_FLAGS ?=
sim: configure
	cmake --build $(BUILD_DIR) --target raft_sim
ifneq ($(SEED),)
	$(BUILD_DIR)/src/raft/sim/raft_sim --seed $(SEED) $(if $(BROKEN),--broken $(BROKEN)) $(if $(SIM_FLAGS),$(SIM_FLAGS),-v)
else
	$(BUILD_DIR)/src/raft/sim/raft_sim --seeds $(SEEDS) --first $(FIRST) $(if $(BROKEN),--broken $(BROKEN)) $(SIM_FLAGS)
endif

FORMAT_FILES = $(shell git ls-files '*.cc' '*.h')
format:
	clang-format -i $(FORMAT_FILES)

format-check: deps
	clang-format --dry-run -Werror $(FORMAT_FILES)

clean:
	rm -rf $(BUILD_DIR) $(FUZZ_DIR) $(SAN_DIR)
