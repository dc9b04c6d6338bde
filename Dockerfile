# The Ray image with longvid installed: runs the CLI, batch jobs and the Serve app.
#   docker build -t longvid .
#   docker run --rm -v "$PWD/out:/out" longvid longvid render "a red fox in the snow" -o /out/fox.mp4
FROM rayproject/ray:2.60.0-py311-gpu

WORKDIR /home/ray/longvid
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users longvid ./longvid
COPY --chown=ray:users serve ./serve
COPY --chown=ray:users jobs ./jobs
RUN pip install --no-cache-dir -e .

ENV LONGVID_RUNS_DIR=/home/ray/runs
CMD ["longvid", "--help"]
