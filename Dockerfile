# syntax=docker/dockerfile:1
# The Szál operator image, for machines with Docker/BuildKit:
#   docker build -t localhost/szal/szal:0.1.0 --build-arg VERSION=0.1.0 .
# `make image` (image/build.sh) builds the same image from Debian packages without
# an engine; both run `szal operator` as 65532:65532 and write only to /tmp, which
# the chart mounts as an emptyDir (readOnlyRootFilesystem). See docs/install.md.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS wheels
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY operator ./operator
# The project's wheel and every dependency's, so the runtime stage installs offline.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG SOURCE=https://szal.dev
LABEL org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="AGPL-3.0-only" \
      org.opencontainers.image.title="szal" \
      org.opencontainers.image.description="Szál workflow engine: the Kubernetes operator"
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels szal \
 && groupadd --gid 65532 szal \
 && useradd --uid 65532 --gid 65532 --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin --comment "szal operator" szal
ENV HOME=/tmp PYTHONDONTWRITEBYTECODE=1
WORKDIR /tmp
USER 65532:65532
ENTRYPOINT ["szal", "operator"]
