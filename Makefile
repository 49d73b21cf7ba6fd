# Set-up happens on first use: `make demo` and `make test` create .venv and install the project into it.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.14.1 torchvision==0.29.1
	$(VENV)/bin/pip install -q -e '.[train,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dgn-am synthesize --model fmnist-caffenet --method dgn-am-class --units fc8:0-9 --seeds 4 --out out/demo --overwrite

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"
