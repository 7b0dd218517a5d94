# One image for every tuneflow app: the Kubernetes deployer runs `tuneflow app run <app> ...` in it.
# Build: docker build -t tuneflow:0.1.0 .   (the deployer's default image, TUNEFLOW_KUBERNETES_IMAGE)
# Linted by hadolint in tests/unit/test_dockerfile.py.

# The base is pinned to a patch release; pin its digest too where your registry is reachable
# (python:3.11.14-slim-bookworm@sha256:...).
FROM python:3.11.14-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY sources ./sources
COPY processors ./processors
COPY sinks ./sinks
# wheels of tuneflow and every dependency (all have manylinux wheels): the runtime stage needs no compiler
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11.14-slim-bookworm
# the version pyproject.toml declares (a test keeps them equal)
ARG TUNEFLOW_VERSION=0.1.0
LABEL org.opencontainers.image.title="tuneflow" \
      org.opencontainers.image.description="tuneflow apps: Source | Processor | Sink over Kafka" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${TUNEFLOW_VERSION}"
# a numeric user, as Pod Security "restricted" (runAsNonRoot) can only verify a numeric one
RUN groupadd --system --gid 10001 tuneflow \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin tuneflow
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels "tuneflow==${TUNEFLOW_VERSION}" \
    && rm -rf /wheels
# the root filesystem is read-only in a pod: nothing is written but to /tmp (an emptyDir there)
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TUNEFLOW_HOME=/tmp/tuneflow
WORKDIR /tmp
USER 10001:10001
EXPOSE 8081
ENTRYPOINT ["tuneflow"]
CMD ["--help"]
