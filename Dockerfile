# The Ray image with longvid installed: runs the Serve app, batch jobs and the CLI, and is
# the image for the KubeRay manifests in deploy/kuberay/.
#   docker build -t longvid .
#   docker run --rm -p 8000:8000 --shm-size=2g -e LONGVID_API_TOKENS=... longvid             # serve run serve.app:app
#   docker run --rm --shm-size=2g -v "$PWD/work:/work" longvid \
#       python jobs/batch_render.py /work/specs.jsonl --store /work/runs --out-dir /work/renders
#   docker run --rm --gpus all --shm-size=2g -v hf:/home/ray/.cache/huggingface -v "$PWD/work:/work" longvid \
#       longvid render "a fox in the snow" --provider local --allow-download -o /work/fox.mp4   # local model on a GPU
FROM rayproject/ray:2.60.0-py311-gpu

# espeak-ng: the offline narration voice (the default --speech); Noto Sans CJK: CJK text on
# contact sheets and burned-in subtitles. Installed as root (uid 0),
# then back to the image's user ray (uid 1000); its version is the base image's release's.
USER 0
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends espeak-ng fonts-noto-cjk \
    && rm -rf /var/lib/apt/lists/*
USER 1000

# Created as the image's user (ray), so the install below can write its build files.
RUN mkdir -p /home/ray/longvid
WORKDIR /home/ray/longvid

# Dependencies in a layer of their own (torch is large): editing the code does not
# reinstall them. Empty packages stand in for the code while they install.
COPY --chown=ray:users pyproject.toml README.md ./
RUN mkdir longvid serve jobs \
    && touch longvid/__init__.py serve/__init__.py jobs/__init__.py \
    && pip install --no-cache-dir . \
    && pip uninstall --yes longvid \
    && rm -rf longvid serve jobs build ./*.egg-info

COPY --chown=ray:users longvid ./longvid
COPY --chown=ray:users serve ./serve
COPY --chown=ray:users jobs ./jobs
RUN pip install --no-cache-dir --no-deps -e .

# Runs go to a folder in the image unless LONGVID_STORE says otherwise (s3://bucket/prefix
# or a mounted volume); Serve listens on every interface of the container.
# Model weights: the Hugging Face cache, a volume on the node so they download once per node.
ENV LONGVID_STORE=/home/ray/runs \
    HF_HOME=/home/ray/.cache/huggingface \
    RAY_SERVE_DEFAULT_HTTP_HOST=0.0.0.0 \
    RAY_USAGE_STATS_ENABLED=0
EXPOSE 8000 8265
CMD ["serve", "run", "serve.app:app"]
