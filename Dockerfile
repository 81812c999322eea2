# The fleetrun image: collector, sink, migrations and the CLI (one console script, `fleetrun`).
# One stage, no compiler: the runtime packages only (stack/, bench/ and tests/ are development
# tools and stay out, as they stay out of the wheel), with every dependency at the version
# requirements.lock pins. The lock also pins the dev and bench tools, so it is a constraint on
# what the project needs, not a list to install: the image gets the runtime dependencies alone.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
RUN useradd --create-home --uid 10001 fleetrun
COPY requirements.lock pyproject.toml README.md /src/
COPY fleetrun /src/fleetrun
COPY collector /src/collector
COPY sink /src/sink
COPY schemas /src/schemas
RUN pip install --no-cache-dir -c /src/requirements.lock /src \
    && pip check \
    && rm -rf /src \
    && fleetrun --help >/dev/null
USER fleetrun
WORKDIR /home/fleetrun
ENTRYPOINT ["fleetrun"]
CMD ["--help"]
