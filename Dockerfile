# One image for every Zhiku service; docker-compose.yml picks the command.
FROM python:3.11-slim
# gcc builds model/native (plain C, a few seconds) during the pip install below.
RUN apt-get update && apt-get install -y --no-install-recommends libmagic1 gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/zhiku
COPY pyproject.toml constraints.txt ./
COPY app app
COPY ingest ingest
COPY rag rag
COPY model model
COPY ui ui
COPY docs docs
# constraints.txt pins torch==2.13.0; point PIP_EXTRA_INDEX_URL at a CPU-wheel index (build arg) so pip does
# not pull a CUDA build onto CPU-only hosts.
ARG PIP_EXTRA_INDEX_URL=""
RUN pip install --no-cache-dir -c constraints.txt -e .
ENV ZHIKU_DATA_DIR=/data DO_NOT_TRACK=true SCARF_NO_ANALYTICS=true HF_HUB_OFFLINE=1
VOLUME /data
