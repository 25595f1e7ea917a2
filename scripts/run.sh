#!/usr/bin/env bash
# Start the whole stack with honcho: redis, web, worker, webhooks, beat, flower.
# Prints the web URL, a fresh demo API key and the Flower credentials first.
# Ctrl-C stops every process (honcho forwards the signal and waits for them).
set -euo pipefail
cd "$(dirname "$0")/.."

mkdir -p var/redis
export PORT="${PORT:-8000}"
export FLOWER_PORT="${FLOWER_PORT:-5555}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6380/0}"
if [ -z "${FLOWER_BASIC_AUTH:-}" ]; then
  FLOWER_BASIC_AUTH="admin:$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(18))')"
  export FLOWER_BASIC_AUTH
fi

demo_key="$(.venv/bin/python manage.py create_api_key --name demo --tier standard --label "make run" 2>/dev/null)"

cat <<INFO

  Ephemera is starting.
    API        http://127.0.0.1:${PORT}/api/v1/   (docs: http://127.0.0.1:${PORT}/api/docs/)
    API key    ${demo_key}
    Flower     http://127.0.0.1:${FLOWER_PORT}/    (user:password ${FLOWER_BASIC_AUTH})

  Try:  curl -H "Authorization: Bearer ${demo_key}" -H "Prefer: wait=30" \\
          -F image=@photo.jpg -F task=cartoonize http://127.0.0.1:${PORT}/api/v1/jobs
  Ctrl-C stops everything.

INFO

export PATH="$PWD/.venv/bin:$PATH"
# honcho hands each process PORT = base + 100 * its index in the Procfile:
# web comes first, so it gets exactly $PORT.
exec honcho start --procfile Procfile --port "$PORT" --no-prefix
