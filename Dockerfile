# orderflow: the Faust workers and the `orderflow` command (gateway, simulator, topics, dlq).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    ORDERFLOW_STATE_DIR=/data/state
WORKDIR /app

# Dependencies first (a layer that survives code changes), then the code.
# constraints.txt pins every dependency at the version tested (tools/lock-deps writes it).
COPY pyproject.toml README.md constraints.txt ./
RUN mkdir -p schemas streams/web streams/tools agents \
    && touch schemas/__init__.py streams/__init__.py streams/web/__init__.py streams/tools/__init__.py agents/__init__.py \
    && pip install -c constraints.txt . && pip uninstall -y orderflow
COPY schemas schemas
COPY streams streams
COPY agents agents
RUN pip install --no-deps . && mkdir -p /data

EXPOSE 6066
CMD ["faust", "-A", "streams.app", "worker", "-l", "info", "--web-port", "6066"]
