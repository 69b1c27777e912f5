# StreamMUSE server image: the Ray Serve app with the shipped checkpoint baked in.
#   CPU:  docker build --build-arg VARIANT=cpu  -t streammuse:cpu .
#   CUDA: docker build --build-arg VARIANT=gpu  -t streammuse:cuda .
# Run:    docker run -p 8000:8000 [-e STREAMMUSE_TOKEN=...] [--gpus all] streammuse:cpu
# On Kubernetes the KubeRay operator overrides the command (ray start) and Serve imports
# streammuse.serving.app:build_app from serveConfigV2 (k8s/rayservice.yaml).
ARG VARIANT=cpu
# The Ray image's Ray must equal the pinned ray[serve]==2.60.0 (rayVersion in the RayService).
ARG RAY_VERSION=2.60.0

FROM rayproject/ray:${RAY_VERSION}-py311-cpu AS base-cpu
# torch is pinned to 2.13.0; the CPU wheel index keeps the image free of CUDA libraries.
ENV TORCH_INDEX=https://download.pytorch.org/whl/cpu STREAMMUSE_NUM_GPUS=0

FROM rayproject/ray:${RAY_VERSION}-py311-gpu AS base-gpu
ENV TORCH_INDEX=https://pypi.org/simple STREAMMUSE_NUM_GPUS=1

FROM base-${VARIANT}
# The Ray images run as the non-root user `ray` (uid 1000); keep it that way.
USER ray
WORKDIR /home/ray/streammuse
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users streammuse ./streammuse
RUN pip install --no-cache-dir --extra-index-url "${TORCH_INDEX}" "torch==2.13.0" \
 && pip install --no-cache-dir . \
 && python -c "import streammuse.model.engine as e; assert (e.SHIPPED_CHECKPOINT / e.WEIGHTS_FILE).exists(), 'no checkpoint in the package'"
ENV PYTHONUNBUFFERED=1
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
CMD ["sh", "-c", "exec streammuse serve --host 0.0.0.0 --port 8000 --num-gpus ${STREAMMUSE_NUM_GPUS}"]
