# make setup: .venv with gdb's own Python + pinned dependencies, and the examples compiled.
# make demo:  the main job on a bundled example.   make test: the whole suite.   make bench.
GDB     ?= gdb
CC      ?= gcc
VENV    := .venv
STAMP   := $(VENV)/.installed
EXAMPLES := $(patsubst examples/%.c,examples/build/%,$(wildcard examples/*.c))

.PHONY: setup demo test unit bench clean gdbserver

setup: $(STAMP) $(EXAMPLES) gdbserver

# The tests of checkpoints on a remote target run a real gdbserver: Debian's package, which
# needs root (or password-less sudo) to install. Without it those tests fail and say why.
gdbserver:
	@command -v gdbserver >/dev/null || { \
		echo "Installing gdbserver (the remote-target tests run it)"; \
		sudo=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
		$$sudo apt-get install -y -q gdbserver >/dev/null 2>&1 || \
		{ $$sudo apt-get update -q >/dev/null 2>&1 && $$sudo apt-get install -y -q gdbserver >/dev/null 2>&1; } || \
		echo "Could not install gdbserver: the remote-target tests will fail until it is installed"; }

$(STAMP): pyproject.toml scripts/gdb-python
	@py=$$(GDB=$(GDB) scripts/gdb-python) && \
	if [ ! -x $(VENV)/bin/python ] || [ "$$($(VENV)/bin/python -c 'import sys; print(sys.base_prefix)')" != "$$($$py -c 'import sys; print(sys.base_prefix)')" ]; then \
		rm -rf $(VENV) && echo "Creating $(VENV) with $$py (the Python gdb embeds)" && $$py -m venv $(VENV); \
	fi
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

examples/build/%: examples/%.c
	@mkdir -p examples/build
	$(CC) -g -O0 -pthread -o $@ $<

demo: setup
	$(GDB) -nx -batch -x gdbinit.py -x examples/demo.gdb examples/build/counter

test: setup
	$(VENV)/bin/python -m pytest -q tests

unit: setup
	$(VENV)/bin/python -m pytest -q tests/unit

bench: setup
	$(VENV)/bin/python bench/restore.py
	$(VENV)/bin/python bench/checkpoint.py

clean:
	rm -rf $(VENV) examples/build .pytest_cache
