# The fleetrun image: collector, sink, migrations and the CLI (one console script, `fleetrun`).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 fleetrun
WORKDIR /src
COPY pyproject.toml README.md ./
COPY fleetrun fleetrun
COPY collector collector
COPY sink sink
COPY schemas schemas
COPY stack stack
RUN pip install . && rm -rf /src
USER fleetrun
WORKDIR /home/fleetrun
ENTRYPOINT ["fleetrun"]
CMD ["--help"]
