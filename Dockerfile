# One image for the operator and the workers' runtime (the `jobqueue` CLI).
#
#   docker build -t registry.example/jobqueue-operator:0.1.0 .
#
# The operator runs `jobqueue-operator`; worker images build FROM this one and add the
# application's job modules (docs/jobs.md, "Worker image"; examples/Dockerfile is the demo's).
#
# BASE_IMAGE is the runtime's base and BUILD_IMAGE the build stage's (it needs `python3 -m
# venv` with pip). Both default to the public Python image, pinned by digest. `make image`
# builds this file without a registry or a daemon: it passes a Debian root filesystem made by
# mmdebstrap as both (hack/images.py), so the same Dockerfile is built here and by users.
ARG BASE_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7
ARG BUILD_IMAGE=${BASE_IMAGE}

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY workers/ workers/
# One virtualenv holds the project and its dependencies; the runtime stage copies only it.
# pip, setuptools and wheel leave it afterwards: nothing in the final image can build or fetch.
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m venv /opt/jobqueue \
    && /opt/jobqueue/bin/pip install --disable-pip-version-check . \
    && /opt/jobqueue/bin/pip uninstall --disable-pip-version-check -y pip setuptools wheel

FROM ${BASE_IMAGE}
COPY --from=build /opt/jobqueue /opt/jobqueue
# uid 65532 needs a name: kopf (getpass.getuser) and other libraries look the user up and fail
# on an unknown uid. Appended with shell builtins only: nothing is installed here.
RUN echo 'nonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin' >> /etc/passwd \
    && echo 'nonroot:x:65532:' >> /etc/group
ENV PATH=/opt/jobqueue/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# the uid the chart's and the worker Deployment's security contexts expect (restricted PSS)
USER 65532:65532
ENTRYPOINT []
CMD ["jobqueue-operator"]
