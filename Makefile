# The README's two commands are `make demo` (the main job) and `make test` (everything).
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest

.PHONY: deps setup bins keda image chart pod-images test test-keda test-unit lint typecheck generate demo dev-up dev-down clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed  ## Python virtualenv with the project and its dev tools

deps:  ## system packages (redis-server, prometheus, ...): installs what is missing, silent otherwise
	hack/system-deps.sh

bins:  ## build (once) the local control plane, kwok, and fetch helm/kubectl
	hack/build-control-plane.sh

keda:  ## build (once) the real KEDA, the autoscaling benchmarks' baseline (not part of bins)
	hack/build-keda.sh

image: deps  ## the operator image and the demo's worker image (buildah, no daemon; cached by inputs)
	python3 hack/images.py build

chart: setup  ## the chart as an archive for an OCI registry (.cache/chart/), with the push commands
	$(PY) helm/jobqueue-operator/hack/package_chart.py

pod-images: deps  # what the pod runner runs; where it cannot (not root), says so and goes on
	python3 hack/images.py build --for-pods

DOCKERFILES := Dockerfile examples/Dockerfile hack/redis-image/Dockerfile tests/integration/scaling/Dockerfile benchmarks/Dockerfile

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/hadolint $(DOCKERFILES)

typecheck: setup
	$(VENV)/bin/mypy

test: deps setup bins lint typecheck  ## everything: lint, types, unit and integration tests
	$(PYTEST)

test-keda: deps setup bins keda  ## the opt-in tests against the real KEDA (pytest -m keda)
	$(PYTEST) -m keda

test-unit: setup  ## the fast tests only (no cluster, Redis or Prometheus)
	$(PYTEST) -m "not integration"

generate: setup  ## regenerate CRDs, install manifests, dashboards, alert rules and the API's OpenAPI
	$(PY) -m jobqueue_operator.crdgen
	$(PY) -m jobqueue_operator.monitoring
	$(PY) -m jobqueue.api.openapi docs/openapi.json
	$(PY) helm/jobqueue-operator/hack/render_install.py
	$(PY) helm/jobqueue-operator/hack/render_readme.py
	$(PY) helm/jobqueue-operator/hack/render_permissions.py

demo: deps setup bins pod-images  ## the main job: a local cluster running the seed's queues
	$(PY) hack/demo.py

dev-up: deps setup bins pod-images
	$(PY) hack/devenv.py up

dev-down: setup
	$(PY) hack/devenv.py down

clean:
	-$(PY) hack/devenv.py down
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
