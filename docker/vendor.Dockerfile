# The vendor: `vl2v-vendor serve`, the metered CLIP embedding service. CPU by default.
#
#   docker build -f docker/vendor.Dockerfile -t vl2v-vendor .
#
# The base is any Debian-family image with python3 >= 3.10 (+ venv): the official slim image by
# default, or a local one where Docker Hub is out of reach (docs/docker.md). Everything is installed
# into a venv, so a distribution python's "externally managed" guard never applies.
# The first layers are byte-identical in client.Dockerfile so both images share the torch layer.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# Optional pip sources (unset = PyPI): a mirror (PIP_INDEX_URL), or a wheelhouse made with
# `pip download` and served over HTTP on the build host's loopback (build with --network host):
# PIP_FIND_LINKS=http://127.0.0.1:8765/ PIP_NO_INDEX=1 (docs/docker.md). They are pip's own
# variables, so pip reads them with no extra flags. The image history records them: no credentials.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
# The tested pins. PyPI's Linux wheels run on CPU and, under docker-compose.gpu.yml, on a GPU.
ARG TORCH_REQUIREMENTS="torch==2.14.1 torchvision==0.29.1"
# One uid for both images: the keys step (vendor image) writes the key the client reads.
ARG APP_UID=1000

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN python3 -m venv "$VIRTUAL_ENV" && pip install ${TORCH_REQUIREMENTS}

# Only what the wheel is built from: edits to tests or docs keep the cache, and no scratch files
# (runs, pretraining state) end up in a layer. README.md* tolerates a tree without a README.
COPY pyproject.toml README.md* /src/
COPY shared /src/shared
COPY vendor_server /src/vendor_server
COPY client_distill /src/client_distill
RUN pip install /src && rm -rf /src

# Named volumes start as a copy of these directories, ownership included, so the app user can write.
# /data/model: downloaded open_clip/HF weights and custom checkpoints (VL2V_VENDOR_PRETRAINED=/data/model/...).
ENV HF_HOME=/data/model/hf TORCH_HOME=/data/model/torch
RUN useradd --uid "$APP_UID" --create-home app \
    && mkdir -p /data/ledger /data/model /keys \
    && chown app:app /data/ledger /data/model /keys
USER app
WORKDIR /home/app
EXPOSE 8000
CMD ["vl2v-vendor", "serve", "--host", "0.0.0.0", "--port", "8000", "--db", "/data/ledger/vendor.sqlite3"]
