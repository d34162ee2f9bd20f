#!/bin/sh
# The entrypoint of every MeshMart service image: the service's own command line,
# `python -m <service>_service migrate|seed|serve` (deploy/docker/Dockerfile sets
# MESHMART_SERVICE). exec: the service is PID 1's only child, and gets the signals.
set -eu
exec python -m "${MESHMART_SERVICE:?MESHMART_SERVICE is not set}_service" "$@"
