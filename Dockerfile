# One image per function, all from one base: `docker build --target connect .` (see `make build`).
#
# Base: the AWS Lambda Python image, pinned by digest (the tag moves). Its /lambda-entrypoint.sh runs
# awslambdaric (python -m awslambdaric <CMD>) under Lambda, and its bundled Runtime Interface Emulator
# when run elsewhere, so `docker run -p 9000:8080 <image>` is invokable locally with no extra binary.
# That is why the entry point is kept rather than replaced by ENTRYPOINT ["python", "-m", "awslambdaric"].
# To move to a newer base, resolve the digest of the multi-arch index and replace it here:
#   docker buildx imagetools inspect public.ecr.aws/lambda/python:3.12 --format '{{json .Manifest.Digest}}'
#   (or: skopeo inspect --format '{{.Digest}}' docker://public.ecr.aws/lambda/python:3.12)
ARG BASE_IMAGE=public.ecr.aws/lambda/python:3.12@sha256:0628ddc11919f85f4261517d356392dbbc6b3181568d87a376ae2e814464c230

# The runtime dependencies: requirements/image.txt, the lock of pyproject.toml's [project] dependencies
# (exact versions and hashes, resolved with the dev lock by `make lock`), in a layer of their own that
# only a change of the lock rebuilds.
FROM ${BASE_IMAGE} AS base
COPY requirements/image.txt /tmp/requirements.txt
RUN pip install --no-cache-dir --disable-pip-version-check --require-hashes --no-deps \
      --target "${LAMBDA_TASK_ROOT}" -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY shared/ ${LAMBDA_TASK_ROOT}/shared/

FROM base AS connect
COPY lambdas/connect/ ${LAMBDA_TASK_ROOT}/
CMD ["app.handler"]

FROM base AS disconnect
COPY lambdas/disconnect/ ${LAMBDA_TASK_ROOT}/
CMD ["app.handler"]

FROM base AS send_message
COPY lambdas/send_message/ ${LAMBDA_TASK_ROOT}/
CMD ["app.handler"]

FROM base AS get_history
COPY lambdas/get_history/ ${LAMBDA_TASK_ROOT}/
CMD ["app.handler"]

FROM base AS join
COPY lambdas/join/ ${LAMBDA_TASK_ROOT}/
CMD ["app.handler"]

FROM base AS leave
COPY lambdas/leave/ ${LAMBDA_TASK_ROOT}/
CMD ["app.handler"]

FROM base AS list_members
COPY lambdas/list_members/ ${LAMBDA_TASK_ROOT}/
CMD ["app.handler"]

FROM base AS typing
COPY lambdas/typing/ ${LAMBDA_TASK_ROOT}/
CMD ["app.handler"]

FROM base AS send_direct
COPY lambdas/send_direct/ ${LAMBDA_TASK_ROOT}/
CMD ["app.handler"]

FROM base AS default
COPY lambdas/default/ ${LAMBDA_TASK_ROOT}/
CMD ["app.handler"]

FROM base AS fanout
COPY lambdas/fanout/ ${LAMBDA_TASK_ROOT}/
CMD ["app.handler"]

FROM base AS publish
COPY lambdas/publish/ ${LAMBDA_TASK_ROOT}/
CMD ["app.handler"]
