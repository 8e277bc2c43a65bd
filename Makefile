# Quick start: `make book` then `make test`. Everything else is a helper target.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Tools the course runs (nbgrader, alembic, jupyter-book) come from the virtual environment.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: book release notebooks test unit system-packages lock clean help

help:
	@echo "make book   - create .venv, install pinned dependencies, build the site into _build/html, release the assignments"
	@echo "make test   - run the test suite (installs the Debian packages it needs and builds the site first;"
	@echo "              TEST_WORKERS=n runs n test files at a time, default 2)"
	@echo "make unit   - the fast unit layer only (tests/unit: no kernel, no sandbox, no browser; seconds)"
	@echo "make notebooks - write book/NN-*.ipynb (what Colab and Binder open) from the chapters; commit them"

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e ".[test]"
	touch $@

release: $(STAMP)
	$(BIN)/course release

# The chapters are the one source; their paired notebooks (no outputs) are what launch buttons
# open: the chapter as a student reads it in Jupyter or Colab (course/student_notebook.py: numbers
# from the build written in, links to the published site, solutions at the end, no build plumbing).
# A test checks that they match the chapters and the build.
notebooks: $(STAMP)
	$(BIN)/course build
	$(BIN)/python -m course.student_notebook

book: $(STAMP) release
	$(BIN)/course build

# The system packages come first: a missing one stops the run at once, before a long build.
# Test files run TEST_WORKERS at a time (pytest-xdist); a file's tests stay together, so its
# module fixtures (a graded course, the site's pages) are made once.
TEST_WORKERS ?= 2
test: system-packages book
	$(BIN)/python -m pytest --numprocesses=$(TEST_WORKERS) --dist=loadfile --no-loadscope-reorder

# The fast layer: judge, parsers, schemas, reports, planning and scheduling, the type check; no kernel.
# `make test` runs it too.  Two files at a time, as `make test` runs them: about 40 s on two cores.
unit: $(STAMP)
	$(BIN)/python -m pytest --numprocesses=$(TEST_WORKERS) --dist=loadfile tests/unit

system-packages:
	@sh scripts/system-packages.sh

# Regenerate the lock file from the current environment (after changing pyproject.toml).
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | sed -e 's/^torch==\(.*\)+cpu$$/torch==\1/' > requirements.lock

clean:
	rm -rf _build
