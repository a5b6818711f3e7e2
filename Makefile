# make setup: .venv with gdb's own Python + pinned dependencies, and the examples compiled.
# make demo:  the main job on a bundled example.   make test: the whole suite.   make bench.
GDB     ?= gdb
CC      ?= gcc
VENV    := .venv
STAMP   := $(VENV)/.installed
EXAMPLES := $(patsubst examples/%.c,examples/build/%,$(wildcard examples/*.c))

.PHONY: setup demo test unit bench clean

setup: $(STAMP) $(EXAMPLES)

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
