# orderflow: the Faust workers and the `orderflow` command (gateway, simulator, topics, dlq).

# The wheel, its hot path compiled by mypyc (setup.py, streams/compiled.py): needs a C compiler,
# which the image that runs it does not.
FROM python:3.11-slim AS wheel
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md constraints.txt ./
COPY schemas schemas
COPY streams streams
COPY agents agents
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    ORDERFLOW_STATE_DIR=/data/state
WORKDIR /app

# Dependencies first (a layer that survives code changes), then the code.
# constraints.txt pins every dependency at the version tested (tools/lock-deps writes it).
COPY pyproject.toml README.md constraints.txt ./
RUN mkdir -p schemas streams/web streams/tools agents \
    && touch schemas/__init__.py streams/__init__.py streams/web/__init__.py streams/tools/__init__.py agents/__init__.py \
    && pip install -c constraints.txt . && pip uninstall -y orderflow && rm -rf schemas streams agents
COPY --from=wheel /wheels /wheels
RUN pip install --no-deps /wheels/*.whl && rm -rf /wheels && mkdir -p /data

EXPOSE 6066
CMD ["faust", "-A", "streams.app", "worker", "-l", "info", "--web-port", "6066"]
