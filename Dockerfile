# The fleetrun image: collector, sink, migrations and the CLI (one console script, `fleetrun`).
# Built in two stages: the first compiles the sink's native decoder (schemas/_fastrow.c) into a
# wheel; the second installs it and fails the build if the decoder is missing. The image
# carries no compiler.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY fleetrun fleetrun
COPY collector collector
COPY sink sink
COPY schemas schemas
COPY stack stack
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 fleetrun
COPY --from=build /wheels /wheels
RUN pip install /wheels/fleetrun-*.whl && rm -rf /wheels \
    && python -c "from schemas.fastpath import NATIVE; assert NATIVE, 'native decoder missing'"
USER fleetrun
WORKDIR /home/fleetrun
ENTRYPOINT ["fleetrun"]
CMD ["--help"]
