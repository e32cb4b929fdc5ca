#!/usr/bin/env bash
# docs/configuration.md must be exactly what the option schemas say.
# Regenerate with tools/gen-docs after changing a schema.
set -euo pipefail
ksockd=$1
doc="$KSOCK_SOURCE_ROOT/docs/configuration.md"
echo "1..1"
if diff -u "$doc" <("$ksockd" --config-reference) >&2; then
  echo "ok 1 - docs/configuration.md matches the option schemas"
else
  echo "not ok 1 - docs/configuration.md is stale: run tools/gen-docs"
  exit 1
fi
