# The README's commands. Each target installs what it needs on a fresh machine.
PY      := .venv/bin/python
VARINV  := .venv/bin/varinv
STAMP   := .venv/.installed
DEMO    := runs/demo

.PHONY: setup demo demo-pretrained test bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	@if ! ldconfig -p 2>/dev/null | grep -q libfluidsynth; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y --no-install-recommends libfluidsynth3 >/dev/null 2>&1 || \
	     (apt-get update >/dev/null && apt-get install -y --no-install-recommends libfluidsynth3 >/dev/null)) \
	     || echo "warning: could not install libfluidsynth3; InsNotes will be unavailable"; \
	  else echo "warning: libfluidsynth3 missing (apt-get install libfluidsynth3); InsNotes will be unavailable"; fi; \
	fi
	@if ! command -v espeak-ng >/dev/null || [ ! -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y --no-install-recommends espeak-ng fluid-soundfont-gm >/dev/null 2>&1 || \
	     (apt-get update >/dev/null && apt-get install -y --no-install-recommends espeak-ng fluid-soundfont-gm >/dev/null)) \
	     || echo "warning: could not install espeak-ng / fluid-soundfont-gm; two suite domains will be unavailable"; \
	  else echo "warning: espeak-ng or fluid-soundfont-gm missing (apt-get install espeak-ng fluid-soundfont-gm)"; fi; \
	fi
	$(PY) -m pip install -q --disable-pip-version-check -e '.[audio,dev]'
	@touch $(STAMP)

setup: $(STAMP)

# Generate PhoneNums, train V3 (CPU-small), evaluate, recombine. Outputs: runs/demo/
demo: $(STAMP)
	$(VARINV) data phonenums --out data/phonenums-demo --size 3000 --seed 0 --overwrite
	rm -rf $(DEMO)
	$(VARINV) train configs/phonenums_v3_demo.yaml --run $(DEMO) --set data.path=data/phonenums-demo
	$(VARINV) evaluate $(DEMO)
	$(VARINV) recombine $(DEMO)
	$(VARINV) report $(DEMO) -o $(DEMO)/site
	@echo "demo outputs: $(DEMO)/metrics.json, $(DEMO)/plots/, $(DEMO)/recombine/, page $(DEMO)/site/index.html"

# The demo page from the model shipped in the package (pretrained:phonenums): no training, under a minute.
# Outputs: runs/demo-pretrained/ (dataset, run copy, page site/index.html)
demo-pretrained: $(STAMP)
	$(VARINV) demo --pretrained --out runs/demo-pretrained

test: $(STAMP)
	$(PY) -m pytest -q -x; rc=$$?; if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests"; exit 1; fi; exit $$rc

bench: $(STAMP)
	$(PY) benchmarks/bench_v3_phonenums.py

clean:
	rm -rf runs/demo data/phonenums-demo runs/demo-pretrained
