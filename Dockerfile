# syntax=docker/dockerfile:1
#
# lcw-sweep image: one image for every role (API, dispatcher, Ray head and Ray workers), so
# the code and the Ray version are the same everywhere. The entry point is the `lcw-sweep` CLI:
#
#   docker build -t lcw-sweep:cpu .                                  # CPU torch wheel
#   docker build -t lcw-sweep:cuda --build-arg VARIANT=cuda .        # CUDA torch wheel
#   docker run -p 8000:8000 lcw-sweep:cpu serve --host 0.0.0.0       # laptop: all in one
#   docker run lcw-sweep:cpu worker --ray-address ray-head:6379      # dispatcher only
#
# The CUDA variant needs no CUDA base image: the torch wheel brings its CUDA runtime as
# nvidia-* wheels; the host's NVIDIA Container Toolkit provides the driver.

ARG PYTHON_VERSION=3.11

# ---- build: a virtualenv with torch (chosen by VARIANT) and lcw-sweep ----------------------
FROM python:${PYTHON_VERSION}-slim AS build
# cpu | cuda
ARG VARIANT=cpu
ARG TORCH_VERSION=2.13.0
# The CUDA wheel index (cu128 = CUDA 12.8); ignored for VARIANT=cpu.
ARG CUDA_TAG=cu128
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/lcw
ENV PATH=/opt/lcw/bin:$PATH
# torch first, from the index that matches VARIANT, so the project install never pulls
# another build of it.
RUN case "$VARIANT" in \
      cpu)  index=https://download.pytorch.org/whl/cpu ;; \
      cuda) index=https://download.pytorch.org/whl/${CUDA_TAG} ;; \
      *)    echo "VARIANT must be cpu or cuda, got '$VARIANT'" >&2; exit 1 ;; \
    esac \
    && pip install --index-url "$index" "torch==${TORCH_VERSION}"
WORKDIR /src
# Dependencies before the code: editing the code keeps this layer cached.
COPY pyproject.toml README.md ./
RUN mkdir -p lcw service workers && touch lcw/__init__.py service/__init__.py workers/__init__.py \
    && pip install . && pip uninstall -y lcw-sweep
COPY lcw lcw
COPY service service
COPY workers workers
COPY examples /opt/lcw/examples
RUN pip install --no-deps . && lcw-sweep --help > /dev/null

# ---- runtime: the virtualenv only, as a non-root user ---------------------------------------
FROM python:${PYTHON_VERSION}-slim AS runtime
ARG VARIANT=cpu
LABEL org.opencontainers.image.title="lcw-sweep" \
      org.opencontainers.image.description="Sweeps measuring when linearly constrained weights help" \
      org.lcw-sweep.variant="${VARIANT}"
RUN groupadd --gid 1000 lcw \
    && useradd --uid 1000 --gid lcw --create-home --home-dir /home/lcw lcw \
    && mkdir -p /var/lib/lcw /data \
    && chown lcw:lcw /var/lib/lcw /data
COPY --from=build /opt/lcw /opt/lcw
ENV PATH=/opt/lcw/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    LCW_DATA_HOME=/var/lib/lcw \
    LCW_DATA_DIR=/data
USER lcw
WORKDIR /home/lcw
VOLUME ["/var/lib/lcw"]
EXPOSE 8000
ENTRYPOINT ["lcw-sweep"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
