#!/usr/bin/env bash
# System programs the tests start themselves: PostgreSQL (the backend of a real `mlflow server`)
# and Chromium (renders the MLflow UI headless). Debian/Ubuntu packages; does nothing when both
# are already installed.
set -euo pipefail
have_postgres() { compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null; }
have_chromium() { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; }
if have_postgres && have_chromium; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "installing PostgreSQL and Chromium (apt-get)..."
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
  postgresql chromium >/dev/null
have_postgres && have_chromium
