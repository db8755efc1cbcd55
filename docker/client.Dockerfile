# The client: `vl2v`, the budget-aware distilling client (default job: the demo's budget sweep).
# CPU by default; docker-compose.gpu.yml hands it a GPU.
#
#   docker build -f docker/client.Dockerfile -t vl2v-client .
#
# The lines up to `pip install /src` are byte-identical to vendor.Dockerfile (see the comments
# there), so the two images share the torch and package layers.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
ARG TORCH_REQUIREMENTS="torch==2.14.1 torchvision==0.29.1"
ARG APP_UID=1000

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN python3 -m venv "$VIRTUAL_ENV" && pip install ${TORCH_REQUIREMENTS}

COPY pyproject.toml README.md* /src/
COPY shared /src/shared
COPY vendor_server /src/vendor_server
COPY client_distill /src/client_distill
RUN pip install /src && rm -rf /src

# /work is the client's home and working directory (synthetic data, caches, runs): a named volume
# in compose, so a second `up` reuses what the first one prepared and bought.
RUN useradd --uid "$APP_UID" --create-home --home-dir /work app \
    && mkdir -p /results /keys \
    && chown app:app /results /keys
USER app
WORKDIR /work
ENTRYPOINT ["vl2v"]
CMD ["demo", "--vendor", "vl2v", "--vendor-url", "http://vendor:8000", "--api-key-file", "/keys/client.key", "--out", "/results"]
