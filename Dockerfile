# One image for the operator and the workers' runtime (the `jobqueue` CLI).
#
#   docker build -t registry.example/jobqueue-operator:0.1.0 .
#
# The operator runs `jobqueue-operator`; worker images usually build FROM this one and add the
# application's job modules (see docs/jobs.md, "Worker image"):
#
#   FROM registry.example/jobqueue-operator:0.1.0
#   COPY glec/ /app/glec/
#   ENV PYTHONPATH=/app
#
# Not built by this repository's CI: its machines have no container engine. The test suite runs
# the same commands as local processes instead (hack/podrunner.py).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY workers/ workers/
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# the uid the chart's and the worker Deployment's security contexts expect (restricted PSS)
USER 65532:65532
ENTRYPOINT []
CMD ["jobqueue-operator"]
