# MoEE Studio — set-up, demo and tests on a Debian machine (CPU). See README.md.
#   make demo    install everything, then render the demo clip with the bundled model -> out/demo.mp4
#   make studio  install everything, then open the desktop app
#   make test    install everything, then run the test suite (what CI runs)
PYTHON ?= python3
PIP = $(PYTHON) -m pip
# Debian packages: PortAudio for sounddevice (microphone / playback), espeak-ng for synthetic
# speech, and the libraries Qt needs to draw (also offscreen).
APT_PACKAGES = libportaudio2 espeak-ng libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0
# A CPU build of torch is on these machines' disk; pin it first or pip fetches a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
# The exact versions the suite passed with (scripts/lock_constraints.py); empty = newest allowed.
CONSTRAINTS ?= constraints.txt
STAMP = .install.stamp

.PHONY: install demo studio test bench lint clean

$(STAMP): pyproject.toml Makefile $(CONSTRAINTS)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@mkdir -p out
	moee render assets/demo/portrait.png assets/demo/speech.wav -o out/demo.mp4 \
	  --emotion "happiness=0.6,surprise=0.4" --frames-dir out/demo_frames
	@echo "demo written to out/demo.mp4 (frames in out/demo_frames/)"

studio: $(STAMP)
	moee-studio

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PYTHON) -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	moee bench --json

lint: $(STAMP)
	ruff check .

clean:
	rm -rf out $(STAMP) .pytest_cache
