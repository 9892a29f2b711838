# Two entry points for a fresh machine (Python 3.11 + pip): `make book` and `make test`.
# Each creates the virtual environment it needs in .venv and installs the package into it.

PYTHON ?= python3
VENV ?= .venv
PROFILE ?= ci
BIN := $(VENV)/bin

# The shared test data beside a checkout of the project (tests and CI); real users download.
ifneq ($(wildcard ../shared/data),)
export CRYOPOSES_DATA ?= $(abspath ../shared/data)
endif
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: book test venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[book,test,bench]"
	touch $@

## Execute every chapter with the parameters of book/profiles/$(PROFILE).yml, then build the HTML book.
book: venv
	$(BIN)/python book/build.py --profile $(PROFILE)

## Run the test suite.
test: venv
	$(BIN)/python -m pytest

clean:
	rm -rf _build book/_executed
