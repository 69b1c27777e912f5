# StreamMUSE server image: the Ray Serve app with the shipped checkpoint baked in.
#   CPU:  docker build --build-arg VARIANT=cpu  -t streammuse:cpu .
#   CUDA: docker build --build-arg VARIANT=gpu  -t streammuse:cuda .
# Run:    docker run -p 8000:8000 [-e STREAMMUSE_TOKEN=...] [--gpus all] streammuse:cpu
# On Kubernetes the KubeRay operator overrides the command (ray start) and Serve imports
# streammuse.serving.app:build_app from serveConfigV2 (k8s/rayservice.yaml).
# Needs BuildKit (Docker 23 and newer by default; DOCKER_BUILDKIT=1 on 20.10) for the
# wheel mount below. `make test-image` builds it on a stand-in base (image/standin-base.sh).
ARG VARIANT=cpu
# The Ray image's Ray must equal the pinned ray[serve]==2.60.0 (rayVersion in the RayService).
ARG RAY_VERSION=2.60.0
# The bases: any image with Python 3.11, that Ray on PATH, and the user ray (uid 1000).
ARG BASE_CPU=rayproject/ray:${RAY_VERSION}-py311-cpu
ARG BASE_GPU=rayproject/ray:${RAY_VERSION}-py311-gpu
# Where the CPU variant's pip looks for torch (a machine that cannot reach it passes
# https://pypi.org/simple and puts the wheel in image/wheels/).
ARG TORCH_INDEX_CPU=https://download.pytorch.org/whl/cpu

FROM ${BASE_CPU} AS base-cpu
ARG TORCH_INDEX_CPU
# torch is pinned to 2.13.0; the CPU wheel index keeps the image free of CUDA libraries.
ENV TORCH_INDEX=${TORCH_INDEX_CPU} STREAMMUSE_NUM_GPUS=0

FROM ${BASE_GPU} AS base-gpu
ENV TORCH_INDEX=https://pypi.org/simple STREAMMUSE_NUM_GPUS=1

FROM base-${VARIANT}
# The Ray images run as the non-root user `ray` (uid 1000); keep it that way.
USER ray
WORKDIR /home/ray
COPY --chown=ray:users pyproject.toml README.md /tmp/streammuse-src/
COPY --chown=ray:users streammuse /tmp/streammuse-src/streammuse
# image/wheels/ (empty in the repository) may hold a torch==2.13.0 wheel that pip takes
# before the index; it is mounted for this step only, so it adds nothing to the image.
# The source is removed after the install: the package's checkpoint is the only one.
RUN --mount=type=bind,source=image/wheels,target=/tmp/wheels \
    pip install --no-cache-dir --find-links /tmp/wheels --extra-index-url "${TORCH_INDEX}" "torch==2.13.0" \
 && pip install --no-cache-dir --find-links /tmp/wheels /tmp/streammuse-src \
 && rm -rf /tmp/streammuse-src \
 && python -c "import streammuse.model.checkpoint as c; assert (c.SHIPPED_CHECKPOINT / c.WEIGHTS_FILE).exists(), 'no checkpoint in the package'"
# STREAMMUSE_PORT: another port for `docker run --network host` beside other servers.
ENV PYTHONUNBUFFERED=1 STREAMMUSE_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:${STREAMMUSE_PORT}/healthz', timeout=2)"
CMD ["sh", "-c", "exec streammuse serve --host 0.0.0.0 --port ${STREAMMUSE_PORT} --num-gpus ${STREAMMUSE_NUM_GPUS}"]
