# Two set-up commands: `make test` and `make demo`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo install clean bench browser qt pictures

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch is pinned first so that no other requirement can pull a different build.
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The serve tests drive Debian's chromium through Playwright (tests/serve). As root with
# apt-get (a CI machine) a missing chromium is installed; elsewhere this says how. It takes
# no time when chromium is already there. Under CI=1 the browser tests fail without it.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	  else \
	    echo "chromium is missing: the browser tests will skip (fail with CI set); install it: sudo apt-get install chromium"; \
	  fi; }

# The napari plugin's tests (tests/napari_plugin) draw headless: Qt's offscreen platform, with
# OpenGL (Mesa) through a private Xvfb. These are the Debian packages of the X server and of the
# libraries Qt and OpenGL load there (read from /proc/PID/maps of a test run). As root with
# apt-get (a CI machine) missing ones are installed; elsewhere this says how. Under CI=1 the
# napari tests fail without them.
QT_PACKAGES := xvfb libgl1 libglx-mesa0 libopengl0 libglib2.0-0 libfontconfig1 libx11-6 libx11-xcb1 libxext6
qt:
	@[ "$$(uname)" != Linux ] || dpkg -s $(QT_PACKAGES) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(QT_PACKAGES); \
	  else \
	    echo "Xvfb or Qt's libraries are missing: the napari tests will skip (fail with CI set); install them: sudo apt-get install $(QT_PACKAGES)"; \
	  fi; }

# lint-imports: the layers of docs/architecture.md (pyproject.toml [tool.importlinter]).
test: $(STAMP) browser qt
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q tests

demo: $(STAMP)
	$(VENV)/bin/maskrcnn demo --output runs/demo

# Redraw every picture in docs/images from the current recipes (trains runs/demo when missing).
pictures: $(STAMP)
	$(PY) scripts/make_doc_pictures.py --demo-dir runs/demo

bench: $(STAMP)
	$(PY) benchmarks/ops.py

clean:
	rm -rf $(VENV) runs
