#!/usr/bin/env bash
# The README's five-minute tour as a script. Start the server first:
#   HOOKBUS_BOOTSTRAP_TOKEN=dev-bootstrap-token-change-me-0123456789 cargo run --release
set -euo pipefail
cd "$(dirname "$0")"
URL=${HOOKBUS_URL:-http://127.0.0.1:8080}
BOOTSTRAP=${HOOKBUS_BOOTSTRAP_TOKEN:-dev-bootstrap-token-change-me-0123456789}

post() { curl -sS "$URL/api/bpm/cmd" -H "Authorization: Bearer $1" -H 'Content-Type: application/json' -d @"$2"; echo; }

echo "# 1. a token for the tour (shown once)"
TOKEN=$(post "$BOOTSTRAP" 01-create-token.json | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["token"])')
echo "token: ${TOKEN:0:8}..."
echo "# 2. create a configuration (disabled)";   post "$TOKEN" 02-create-config.json
echo "# 3. list configurations";                  post "$TOKEN" 03-list-configs.json
echo "# 4. activate it";                          post "$TOKEN" 04-activate-config.json
echo "# 5. look it up by key";                    post "$TOKEN" 05-lookup-by-key.json
echo "# 6. a bad configuration: every problem at once, status 422"
post "$TOKEN" 06-invalid-config.json
