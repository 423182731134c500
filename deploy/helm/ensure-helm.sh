#!/usr/bin/env bash
# Prints the path of a helm binary, building helm v3.22.0 from the Go module proxy into ~/.cache/patchbay/bin
# the first time (a few minutes; the binary is cached outside the repository). Fails loudly if it cannot.
set -euo pipefail
HELM_VERSION=v3.22.0
BIN_DIR="${PATCHBAY_TOOLS_BIN:-$HOME/.cache/patchbay/bin}"
if [ -n "${HELM:-}" ] && [ -x "$HELM" ]; then echo "$HELM"; exit 0; fi
if [ -x "$BIN_DIR/helm" ] && "$BIN_DIR/helm" version --short 2>/dev/null | grep -q "^$HELM_VERSION"; then echo "$BIN_DIR/helm"; exit 0; fi
if ! command -v go >/dev/null 2>&1; then
  echo "ensure-helm: helm $HELM_VERSION is not in $BIN_DIR and Go is missing to build it (install Go, or set HELM=/path/to/helm)" >&2
  exit 1
fi
echo "ensure-helm: building helm $HELM_VERSION into $BIN_DIR (first run only)..." >&2
mkdir -p "$BIN_DIR"
GOBIN="$BIN_DIR" GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
echo "$BIN_DIR/helm"
