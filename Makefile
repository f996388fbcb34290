# sshca.azure: the two front doors are `make demo` and `make test`; both set themselves up.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV        := .venv
PY          := $(VENV)/bin/python
CHECKOV_VENV := .venv-checkov
TFSCHEMA    := .venv-tfschema
LABCTL      := tests/lab/labctl
STATE       := $(VENV)/.state
DEB_PACKAGES := podman runc debootstrap openssh-client openssh-server uidmap shellcheck git make python3-venv
# ansible-test needs the collection at .../ansible_collections/sshca/azure and resolves links,
# so sanity runs on a fresh copy of the files git would commit.
SANITY_COPY := $(HOME)/.cache/sshca-azure-sanity/$(shell echo "$(CURDIR)" | sha256sum | cut -c1-10)/ansible_collections/sshca/azure
# Sanity judges what the collection ships; the lab, Terraform and benchmarks have ruff and tests.
NOT_COLLECTION := tests/lab|tests/terraform|terraform|bench|tools
PYTEST_LOG  := $(VENV)/pytest.log

.PHONY: help setup demo demo-image demo-down test lint sanity pytest terraform-check bench lab-up lab-down clean

help:
	@echo "make demo   - run sshca.azure against the local lab and show what it did"
	@echo "make test   - every check: ruff, ansible-lint, ansible-test sanity, pytest, terraform"
	@echo "make setup | lab-up | lab-down | demo-down | bench | clean"

# --- set-up: idempotent, and quick once done (stamp files record what is in place) -----------

setup: $(STATE)/debs $(STATE)/venv $(STATE)/checkov $(TFSCHEMA)/.downloaded $(STATE)/podman

$(STATE)/debs:
	@mkdir -p $(STATE)
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "setup: installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@touch $@

# The controller's requirements first (all the collection and `make demo` need), then the test and
# lint tools on top, so the demo does not wait for what only `make test` uses.
$(STATE)/runtime: requirements.txt | $(STATE)/debs
	@echo "setup: Python virtualenv $(VENV) (controller requirements)"
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q -r requirements.txt
	@mkdir -p $(STATE) && touch $@

$(STATE)/venv: requirements.txt requirements-dev.txt | $(STATE)/runtime
	@echo "setup: test and lint tools in $(VENV)"
	@$(PY) -m pip install -q -r requirements-dev.txt
	@touch $@

# checkov pins packaging 23.2, which breaks pytest 9: it gets a virtualenv of its own.
$(STATE)/checkov: | $(STATE)/venv
	@echo "setup: checkov in $(CHECKOV_VENV)"
	@test -x $(CHECKOV_VENV)/bin/python || python3 -m venv $(CHECKOV_VENV)
	@$(CHECKOV_VENV)/bin/python -m pip install -q 'checkov>=3.2,<4'
	@touch $@

# The azurerm provider's schema, one release per major terraform.tf allows, is data inside prebuilt
# CDK provider wheels: downloaded (hash-checked, no dependencies), never installed, and read by
# tests/terraform/azurerm_schema.py. The stamp lives beside the wheels, so each work tree has its own.
$(TFSCHEMA)/.downloaded: tests/terraform/azurerm-schemas.txt | $(STATE)/venv
	@echo "setup: azurerm provider schemas in $(TFSCHEMA)"
	@rm -rf $(TFSCHEMA) && mkdir -p $(TFSCHEMA)
	@$(PY) -m pip download -q --no-deps --only-binary=:all: --require-hashes -d $(TFSCHEMA) -r $<
	@touch $@

# The lab's own code needs only the standard library: system python3, so it can run beside pip.
$(STATE)/podman: tests/lab/labkit/podman.py | $(STATE)/debs
	@python3 -c 'import sys; sys.path.insert(0, "tests/lab"); from labkit import podman; podman.configure()'
	@touch $@

# --- the front doors ------------------------------------------------------------------------

# The demo removes its previous run first; demo-down removes what it leaves running.
# On a fresh machine the demo's host image (bookworm; about a minute of debootstrap) is built while
# pip installs the controller's requirements.
demo: $(STATE)/podman
	@$(MAKE) --no-print-directory -j2 $(STATE)/runtime demo-image
	@$(PY) tests/lab/demo.py

demo-image: | $(STATE)/podman
	@python3 tests/lab/labkit/cli.py image --suite bookworm >/dev/null

demo-down:
	@$(LABCTL) down --state-dir $(HOME)/.sshca-demo/emulator

# Independent suites run side by side; pytest's summary line is printed last. The host images
# (bookworm and trixie) are built first, one at a time, and only when their recipe changed.
test: setup
	@$(LABCTL) image >/dev/null
	@status=0; $(MAKE) --no-print-directory -k -j3 -O lint sanity terraform-check pytest || status=$$?; \
	echo; echo "== pytest summary =="; tail -n 1 $(PYTEST_LOG); \
	if [ $$status -ne 0 ]; then echo "make test: FAILED (see above)"; fi; exit $$status

lint:
	@echo "== ruff =="
	@$(VENV)/bin/ruff check . bench/*/run
	@echo "== ansible-lint =="
	@PATH=$(CURDIR)/$(VENV)/bin:$$PATH ANSIBLE_COLLECTIONS_PATH=$$($(PY) -c 'from tools.collection import \
		collections_root; print(collections_root())') $(VENV)/bin/ansible-lint --offline -q

sanity: $(HOME)/.ansible/test/cache/.standin
	@echo "== ansible-test sanity =="
	@rm -rf $(SANITY_COPY) && mkdir -p $(SANITY_COPY)
	@git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c 'test -e "{}" && echo "{}"' \
		| grep -vE '^($(NOT_COLLECTION))/' | tar -cf - -T - | tar -C $(SANITY_COPY) -xf -
	@cd $(SANITY_COPY) && PATH=$(CURDIR)/$(VENV)/bin:$$PATH \
		ansible-test sanity --local --python 3.11 --requirements --color no 2>&1 | tail -n 40

# ansible-test fetches get-pip from a site these machines cannot reach; a stand-in is used
# only when no real script is cached.
$(HOME)/.ansible/test/cache/.standin: tests/sanity/get_pip_standin.py
	@mkdir -p $(dir $@)
	@v=$$($(PY) -c 'from ansible_test._internal.python_requirements import get_venv_packages; \
	from ansible_test._internal.host_configs import NativePythonConfig; \
	print(get_venv_packages(NativePythonConfig(version="3.11", path="/usr/bin/python3"))["pip"])'); \
	f=$(dir $@)get_pip_$${v//./_}.py; \
	if [ ! -f "$$f" ] || [ -f $@ ]; then cp tests/sanity/get_pip_standin.py "$$f"; fi
	@touch $@

pytest:
	@echo "== pytest =="
	@$(PY) -m pytest -q -n 3 --dist worksteal -p no:cacheprovider --durations=12 2>&1 | tee $(PYTEST_LOG)

terraform-check:
	@echo "== terraform =="
	@if [ -d terraform ]; then $(PY) -m pytest -q -p no:cacheprovider tests/terraform; else echo "no terraform/ yet"; fi

# Every bench runs even when one fails; make bench fails if any did.
bench: setup
	@$(LABCTL) image >/dev/null
	@status=0; for b in bench/*/run; do \
		[ -x "$$b" ] || continue; echo "== $$b =="; $(PY) "$$b" || { echo "$$b: FAILED"; status=1; }; \
	done; exit $$status

# The lab: the Azure emulator on 127.0.0.1 (then `eval "$$(tests/lab/labctl env)"`) and its host images.
lab-up: setup
	@$(LABCTL) image >/dev/null
	@$(LABCTL) up
	@echo 'prepare a shell with: eval "$$(tests/lab/labctl env)"'

lab-down:
	@$(LABCTL) down
	@$(PY) -c 'import sys; sys.path.insert(0, "tests/lab"); from labkit import hosts; \
	print("removed lab hosts:", " ".join(hosts.stop_all()) or "none")'

clean: lab-down
	rm -rf $(VENV) $(CHECKOV_VENV) $(TFSCHEMA) .pytest_cache .ruff_cache .hypothesis tests/output
